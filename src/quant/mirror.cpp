// Mirror descent (Ajanthan, Gupta, Torr, Hartley & Dokania, AISTATS 2021, "Mirror descent view for neural network
// quantization"). The weights are a smooth map of the latent u = θ/s onto the convex hull of the grid's codes L_j:
//   w = s · Σ_j L_j · softmax_j(−β_t (u − L_j)²)                       (k-bit: a softmax over the levels)
// which for binary codes {−1, +1} is exactly w = s·tanh(2β_t u) (the tanh mirror map). β_t = β₀·r^t grows with the
// fractional epoch t, so w tends to the nearest code. The gradient passes through the map:
//   ∂w/∂θ = 2β_t · Var_p(L)        (binary: 2β_t (1 − tanh²(2β_t u)))
// The exported / evaluation-time codes are the nearest grid point (hard quantization of θ).
#include <cmath>

#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

using torch::Tensor;

namespace {

class MirrorSolver final : public WeightSolver {
 public:
  MirrorSolver(double beta0, double growth) : beta0_(beta0), growth_(growth) {}
  std::string name() const override { return "mirror"; }
  bool anneals() const override { return true; }
  std::string schedule_name() const override { return "mirror_beta"; }
  double schedule(const QuantClock& c) const override { return beta0_ * std::pow(growth_, c.t()); }

  Tensor forward(const QuantParam& p, const Quantizer& q, const QuantClock& c, const uint64_t*) const override {
    auto [mean, var] = moments(p, q, schedule(c));
    return mean * Quantizer::broadcast(p.grid.scale.detach(), mean);
  }
  void backward(QuantParam& p, const Quantizer& q, const Tensor& g, const QuantClock& c) const override {
    const double beta = schedule(c);
    auto [mean, var] = moments(p, q, beta);
    p.latent.mutable_grad() = g * var * (2.0 * beta);
  }

 private:
  // E_p[L] and Var_p[L] of the softmax over levels (relative to the zero point).
  static std::pair<Tensor, Tensor> moments(const QuantParam& p, const Quantizer& q, double beta) {
    Tensor u = normalised(p);
    if (q.name() == "binary") {
      Tensor m = torch::tanh(u * (2.0 * beta));
      return {m, 1 - m * m};
    }
    std::vector<float> codes;
    for (float l = q.code_min(); l <= q.code_max(); l += 1.f) codes.push_back(l);
    Tensor L = torch::tensor(codes, u.options());  // [K]
    Tensor logits = -(u.unsqueeze(-1) - L).pow(2) * beta;
    Tensor pr = torch::softmax(logits, -1);
    Tensor m = (pr * L).sum(-1);
    Tensor var = (pr * L * L).sum(-1) - m * m;
    if (p.grid.zero.defined()) m = m - Quantizer::broadcast(p.grid.zero.detach(), m);
    return {m, var};
  }
  double beta0_, growth_;
};

}  // namespace

std::unique_ptr<WeightSolver> make_mirror_solver(const ExperimentConfig& cfg) {
  return std::make_unique<MirrorSolver>(cfg.get<double>("quantization.mirror.beta0"),
                                        cfg.get<double>("quantization.mirror.growth"));
}

}  // namespace bilevel
