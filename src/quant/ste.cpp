// Straight-through estimator (BinaryConnect; Courbariaux, Bengio & David 2015, "BinaryConnect: training deep neural
// networks with binary weights during propagations", Algorithm 1):
//   forward   w = Q(θ)                        (any quantizer; deterministic or stochastic rounding)
//   backward  ∂ℓ/∂θ = ∂ℓ/∂w · 1[|θ/s| ≤ c]    (binary/ternary: c = quantization.ste.clip, BinaryConnect's 1;
//                                              uniform: the code range [q_min, q_max])
//   after the optimizer step  θ ← clip(θ, −c·s, c·s)  (BinaryConnect's latent clip)
#include "bilevel/quant/element.h"
#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

using torch::Tensor;

namespace {

class SteSolver final : public WeightSolver {
 public:
  explicit SteSolver(double clip) : clip_(clip) {}
  std::string name() const override { return "ste"; }
  double saturation() const override { return clip_; }
  void backward(QuantParam& p, const Quantizer& q, const Tensor& g, const QuantClock&) const override {
    const auto [lo, hi] = range(q);
    const Tensor u = normalised(p);
    p.latent.mutable_grad() = g * (u >= lo).logical_and(u <= hi).to(g.scalar_type());
  }
  void after_step(QuantParam& p, const Quantizer& q, const QuantClock&) const override {
    torch::NoGradGuard no_grad;
    const auto [lo, hi] = range(q);
    const Tensor s = Quantizer::broadcast(p.grid.scale.detach(), p.latent);
    const Tensor z = p.grid.zero.defined() ? Quantizer::broadcast(p.grid.zero.detach(), p.latent) : torch::zeros({}, s.options());
    p.latent.copy_(torch::max(torch::min(p.latent, (hi - z) * s), (lo - z) * s));
  }

 private:
  std::pair<double, double> range(const Quantizer& q) const {
    if (q.name() == "uniform") return {q.code_min(), q.code_max()};
    return {-clip_, clip_};
  }
  double clip_;
};

}  // namespace

std::unique_ptr<WeightSolver> make_ste_solver(const ExperimentConfig& cfg) {
  return std::make_unique<SteSolver>(cfg.get<double>("quantization.ste.clip"));
}

}  // namespace bilevel
