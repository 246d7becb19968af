// AdaSTE (Le, Høier, Lin & Zach, CVPR 2022, "AdaSTE: an adaptive straight-through estimator to train binary neural
// networks"), binary weights. On the normalised latent u = θ/s the inner problem is
//   w*(u) = argmin_{w ∈ [−1, 1]} ½(w − u)² + β(½w² − (1+α)|w|) = clip((u + β(1+α)·sign u)/(1+β), −1, 1),
// and the forward pass uses w = s·w*(u): near the identity for small β, exactly s·sign(u) once β ≥ 1/α.
// β grows each epoch: β_e = min(β₀·r^e, 1/α) (the authors: β₀ = α = 0.01, r = 1.05).
// Backward (the paper's finite-difference, "adaptive" slope): with the loss linearised at w*, the perturbed inner
// problem argmin_w ½(w − u)² + β(½w² − (1+α)|w|) + τ·ĝ·w (ĝ = ∂ℓ/∂w* = s·∂ℓ/∂w) is the unperturbed one at u − τĝ, so
//   ∂ℓ/∂u ≈ (w*(u) − w*(u − τĝ))/τ,     ∂ℓ/∂θ = (∂ℓ/∂u)/s:
// ĝ/(1+β) where neither solution saturates, 0 where both stay saturated at the same face, and bounded by
// 2(1 + β(1+α))/((1+β)τ) where the perturbation crosses u = 0. The latent is clipped to |u| ≤ 1 after each step
// (beyond it the map is saturated for every β).
#include <algorithm>
#include <cmath>

#include "bilevel/kernels/quant_ops.h"
#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

using torch::Tensor;

namespace {

class AdaSteSolver final : public WeightSolver {
 public:
  AdaSteSolver(double alpha, double beta0, double growth, double tau)
      : alpha_(alpha), beta0_(beta0), growth_(growth), tau_(tau) {}
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
    const float beta = float(schedule(c)), alpha = float(alpha_), tau = float(tau_);
    const Tensor s = Quantizer::broadcast(p.grid.scale.detach(), p.latent);
    Tensor u = normalised(p).contiguous();
    Tensor gs = (g * s).contiguous();
    Tensor out = torch::empty_like(u);
    kernels::adaste_grad_out(gs, u, beta, alpha, tau, out);
    p.latent.mutable_grad() = out / s;
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
  double alpha_, beta0_, growth_, tau_;
};

}  // namespace

std::unique_ptr<WeightSolver> make_adaste_solver(const ExperimentConfig& cfg) {
  return std::make_unique<AdaSteSolver>(cfg.get<double>("quantization.adaste.alpha"),
                                        cfg.get<double>("quantization.adaste.beta0"),
                                        cfg.get<double>("quantization.adaste.growth"),
                                        cfg.get<double>("quantization.adaste.tau"));
}

}  // namespace bilevel
