// ProxQuant (Bai, Wang & Liberty, ICLR 2019, "ProxQuant: quantized neural networks via proximal operators").
// The forward pass uses the latent itself, w = θ, and every optimizer step is followed by a proximal step on the
// quantization regulariser R(θ) = Σ dist(θ, Q) (binary: Σ min|θ ∓ s|; k-bit: the distance to the k-bit grid):
//   θ ← prox_{λ_t R}(θ) = q + sign(θ − q)·max(|θ − q| − λ_t·s, 0),   q = the grid point nearest θ
// (soft-thresholding towards q, λ in units of the grid step s). λ grows linearly, λ_t = lr_t · rate · t with t the
// fractional epoch (the authors' schedule). From epoch `freeze_epoch` (1-based; 0 = the last epoch) the weights are
// hard-quantized, w = Q(θ), and frozen: θ gets no gradient and is kept on the grid (biases and full-precision layers
// keep training).
#include "bilevel/kernels/quant_ops.h"
#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

using torch::Tensor;

namespace {

class ProxQuantSolver final : public WeightSolver {
 public:
  ProxQuantSolver(double rate, int64_t freeze_epoch) : rate_(rate), freeze_epoch_(freeze_epoch) {}
  std::string name() const override { return "proxquant"; }
  bool anneals() const override { return true; }
  std::string schedule_name() const override { return "proxquant_lambda"; }
  double schedule(const QuantClock& c) const override { return frozen(c) ? INFINITY : c.lr * rate_ * c.t(); }

  Tensor forward(const QuantParam& p, const Quantizer& q, const QuantClock& c, const uint64_t* key) const override {
    if (frozen(c)) return q.quantize(p.latent, p.grid, key);
    return p.latent.detach().clone();
  }
  void backward(QuantParam& p, const Quantizer&, const Tensor& g, const QuantClock& c) const override {
    p.latent.mutable_grad() = frozen(c) ? torch::zeros_like(g) : g.clone();
  }
  void after_step(QuantParam& p, const Quantizer& q, const QuantClock& c) const override {
    torch::NoGradGuard no_grad;
    if (frozen(c)) {
      p.latent.copy_(q.quantize(p.latent, p.grid));
      return;
    }
    const float lambda = float(schedule(c));
    const Tensor s = Quantizer::broadcast(p.grid.scale.detach(), p.latent);
    const Tensor z = p.grid.zero.defined() ? Quantizer::broadcast(p.grid.zero.detach(), p.latent) : torch::zeros({}, s.options());
    Tensor u = normalised(p).contiguous();
    Tensor nearest = q.codes(p.latent, p.grid).contiguous();
    kernels::prox_towards_(nearest, u, lambda);
    p.latent.copy_((nearest - z) * s);
  }

 private:
  bool frozen(const QuantClock& c) const {
    const int64_t first = freeze_epoch_ > 0 ? freeze_epoch_ : c.epochs;
    return c.epoch + 1 >= first;
  }
  double rate_;
  int64_t freeze_epoch_;
};

}  // namespace

std::unique_ptr<WeightSolver> make_proxquant_solver(const ExperimentConfig& cfg) {
  return std::make_unique<ProxQuantSolver>(cfg.get<double>("quantization.proxquant.rate"),
                                           cfg.get<int64_t>("quantization.proxquant.freeze_epoch"));
}

}  // namespace bilevel
