// Straight-through estimator (BinaryConnect; Courbariaux, Bengio & David 2015, "BinaryConnect: training deep neural
// networks with binary weights during propagations", Algorithm 1):
//   forward   w = Q(θ)                        (any quantizer; deterministic or stochastic rounding)
//   backward  ∂ℓ/∂θ = ∂ℓ/∂w · 1[lo ≤ θ/s + z ≤ hi]   (binary/ternary: [−c, c] with c = quantization.ste.clip,
//                                              BinaryConnect's 1; uniform: the code range [q_min, q_max])
//   after the optimizer step  θ ← clip(θ, (lo − z)·s, (hi − z)·s)  (BinaryConnect's latent clip)
// With a learned scale, ∂ℓ/∂s = Σ ∂ℓ/∂w · w/s per channel. Backward (with the scale's gradient) and the post-step
// (with the new weights) each run as one fused pass over the tensor, parallel over its rows.
#include "bilevel/kernels/optim_ops.h"
#include "bilevel/kernels/ste_ops.h"
#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

using torch::Tensor;

namespace {

// Every pass is a kernel entry (bilevel/kernels/ste_ops.h, optim_ops.h): the CPU twin for CPU tensors, the CUDA
// kernel for CUDA tensors; nothing here touches tensor memory.
class SteSolver final : public WeightSolver {
 public:
  explicit SteSolver(double clip) : clip_(clip) {}
  std::string name() const override { return "ste"; }
  double saturation() const override { return clip_; }
  bool writes_scale_grad() const override { return true; }
  bool clears_weight_grad() const override { return true; }

  void backward(QuantParam& p, const Quantizer& q, const Tensor& g, const QuantClock&) const override {
    const auto [lo, hi] = range(q);
    const Tensor theta = p.latent.detach().contiguous(), w = p.weight.detach().contiguous();
    // g is the weights' gradient buffer: it is read once here and left zero for the next batch's accumulation.
    Tensor gc = g.contiguous();
    const Tensor& wg = p.weight.grad();
    const bool clear = wg.defined() && gc.is_alias_of(wg) && gc.storage_offset() == wg.storage_offset();
    const Tensor s = p.grid.scale.detach().contiguous(), z = zero_of(p, theta.device());
    // The latent's gradient buffer is reused from step to step (a fresh allocation of this size costs page faults).
    Tensor out = p.grad_cache.defined() && p.grad_cache.sizes() == theta.sizes() &&
                         p.grad_cache.device() == theta.device()
                     ? p.grad_cache
                     : torch::empty_like(theta);
    Tensor sg = kernels::ste_backward(gc, theta, w, s, z, lo, hi, p.learn_scale, clear, out);
    p.latent.mutable_grad() = out;
    if (p.learn_scale) p.grid.scale.mutable_grad() = sg.to(p.grid.scale.device());
  }

  bool fuses_adam_step() const override { return true; }

  // backward, Adam and update in one pass: per element, the masked gradient (with backward's scale), Adam's step,
  // the latent clip and the re-quantized weight (with the stepped scale); ∂ℓ/∂w is left zero.
  void fused_adam_step(QuantParam& p, const Quantizer& q, const Tensor& g, const Tensor& scale_before,
                       const kernels::AdamElement& a, const Tensor& m, const Tensor& v) const override {
    torch::NoGradGuard no_grad;
    const auto [lo, hi] = range(q);
    const Tensor s0 = scale_before.contiguous(), s = p.grid.scale.detach().contiguous();
    const Tensor z = zero_of(p, p.latent.device());
    Tensor theta = p.latent.detach(), w = p.weight.detach(), gg = g, mm = m, vv = v;
    kernels::ste_adam_step_(theta, w, gg, mm, vv, s0, s, z, lo, hi, builtin_code_spec(q).value(), a);
  }

  void update(QuantParam& p, const Quantizer& q, const QuantClock&) const override {
    torch::NoGradGuard no_grad;
    const auto [lo, hi] = range(q);
    TORCH_CHECK(p.latent.is_contiguous() && p.weight.is_contiguous(), "ste: latent and weights must be contiguous");
    const Tensor s = p.grid.scale.detach().contiguous(), z = zero_of(p, p.latent.device());
    if (const auto spec = builtin_code_spec(q)) {
      Tensor theta = p.latent.detach(), w = p.weight.detach();
      kernels::ste_update_(theta, w, s, z, lo, hi, *spec);
      return;
    }
    // A registered grid: the clip with LibTorch's operators (the same float operations as the kernel), then its
    // codes through Quantizer::codes (its virtual code function).
    const Tensor sb = Quantizer::broadcast(s, p.latent), zb = Quantizer::broadcast(z, p.latent);
    const Tensor tlo = (float(lo) - zb) * sb, thi = (float(hi) - zb) * sb;
    p.latent.detach().copy_(torch::min(torch::max(p.latent.detach(), tlo), thi));
    p.weight.detach().copy_(q.dequantize(q.codes(p.latent, p.grid), GridParams{s, z}));
  }

 private:
  std::pair<double, double> range(const Quantizer& q) const {
    if (q.name() == "binary" || q.name() == "ternary") return {-clip_, clip_};
    return {q.code_min(), q.code_max()};  // uniform and registered grids: the code range
  }
  static Tensor zero_of(const QuantParam& p, const torch::Device& device) {
    return p.grid.zero.defined() ? p.grid.zero.detach().to(device, torch::kFloat32).contiguous()
                                 : torch::zeros({p.grid.scale.numel()}, torch::TensorOptions().device(device));
  }
  double clip_;
};

}  // namespace

std::unique_ptr<WeightSolver> make_ste_solver(const ExperimentConfig& cfg) {
  return std::make_unique<SteSolver>(cfg.get<double>("quantization.ste.clip"));
}

}  // namespace bilevel
