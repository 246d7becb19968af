// AdaSTE (Le, Høier, Lin & Zach, CVPR 2022, "AdaSTE: an adaptive straight-through estimator to train binary neural
// networks"), binary weights. On the normalised latent u = θ/s the inner problem is
//   w*(u) = argmin_{w ∈ [−1, 1]} ½(w − u)² + β(½w² − (1+α)|w|) = clip((u + β(1+α)·sign u)/(1+β), −1, 1),
// and the forward pass uses w = s·w*(u): near the identity for small β, exactly s·sign(u) once β ≥ 1/α.
// β grows each epoch: β_e = min(β₀·r^e, 1/α) (the authors: β₀ = α = 0.01, r = 1.05).
// Backward (the paper's adaptive estimator): with the loss linearised at w*, the perturbed inner problem
// argmin_w ½(w − u)² + β(½w² − (1+α)|w|) + τ·ĝ·w (ĝ = ∂ℓ/∂w* = s·∂ℓ/∂w) is the unperturbed one at u − τĝ, so every
// finite difference (w*(u) − w*(u − τĝ))/τ is a secant of w*; AdaSTE picks τ per weight from the sign of ĝ·u:
//   ∂ℓ/∂u = σ(u, ĝ)·ĝ,     ∂ℓ/∂θ = (∂ℓ/∂u)/s = σ·∂ℓ/∂w,
// σ = 1/(1+β) on the linear piece when the step moves u away from 0, 0 when it pushes a saturated u further out,
// and the secant across the sign change at 0, capped at ½, when it moves u towards 0 (saturated weights get this
// "leaky" slope too); once β ≥ 1/α, where w* = sign u, weights moved towards 0 still get min(½, 1/|u|), so training
// does not stop at the end of the schedule. Every case with its equation: kernels/quant_element.h, adaste_slope.
// The latent is clipped to |u| ≤ 1 after each step (beyond it the map is saturated for every β).
#include <algorithm>
#include <cmath>

#include "bilevel/kernels/quant_ops.h"
#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

using torch::Tensor;

namespace {

class AdaSteSolver final : public WeightSolver {
 public:
  AdaSteSolver(double alpha, double beta0, double growth) : alpha_(alpha), beta0_(beta0), growth_(growth) {}
  std::string name() const override { return "adaste"; }
  std::vector<std::string> quantizers() const override { return {"binary"}; }
  bool anneals() const override { return true; }
  std::string schedule_name() const override { return "adaste_beta"; }
  double schedule(const QuantClock& c) const override {
    return std::min(beta0_ * std::pow(growth_, double(c.epoch)), 1.0 / alpha_);
  }
  double saturation() const override { return 1.0; }

  Tensor forward(const QuantParam& p, const Quantizer&, const QuantClock& c, const uint64_t*) const override {
    const float beta = float(schedule(c)), alpha = float(alpha_);
    Tensor u = normalised(p).contiguous();
    Tensor w = torch::empty_like(u);
    kernels::adaste_forward_out(u, beta, alpha, w);
    return w * Quantizer::broadcast(p.grid.scale.detach(), w);
  }
  void backward(QuantParam& p, const Quantizer&, const Tensor& g, const QuantClock& c) const override {
    const float beta = float(schedule(c)), alpha = float(alpha_);
    // σ depends on u and on the sign of ĝ·u only, and ĝ = s·∂ℓ/∂w with s > 0, so ∂ℓ/∂θ = σ·ĝ/s = σ·∂ℓ/∂w: the
    // kernel takes ∂ℓ/∂w as it is.
    Tensor u = normalised(p).contiguous();
    Tensor out = torch::empty_like(u);
    kernels::adaste_grad_out(g.contiguous(), u, beta, alpha, out);
    p.latent.mutable_grad() = out;
  }
  void after_step(QuantParam& p, const Quantizer&, const QuantClock&) const override {
    torch::NoGradGuard no_grad;
    const Tensor s = Quantizer::broadcast(p.grid.scale.detach(), p.latent);
    p.latent.copy_(torch::max(torch::min(p.latent, s), -s));
  }
  Tensor codes(const QuantParam& p, const Quantizer&) const override {
    return (p.latent.detach() >= 0).to(torch::kFloat32) * 2 - 1;
  }

 private:
  double alpha_, beta0_, growth_;
};

}  // namespace

std::unique_ptr<WeightSolver> make_adaste_solver(const ExperimentConfig& cfg) {
  return std::make_unique<AdaSteSolver>(cfg.get<double>("quantization.adaste.alpha"),
                                        cfg.get<double>("quantization.adaste.beta0"),
                                        cfg.get<double>("quantization.adaste.growth"));
}

}  // namespace bilevel
