// Straight-through estimator (BinaryConnect; Courbariaux, Bengio & David 2015, "BinaryConnect: training deep neural
// networks with binary weights during propagations", Algorithm 1):
//   forward   w = Q(θ)                        (any quantizer; deterministic or stochastic rounding)
//   backward  ∂ℓ/∂θ = ∂ℓ/∂w · 1[lo ≤ θ/s + z ≤ hi]   (binary/ternary: [−c, c] with c = quantization.ste.clip,
//                                              BinaryConnect's 1; uniform: the code range [q_min, q_max])
//   after the optimizer step  θ ← clip(θ, (lo − z)·s, (hi − z)·s)  (BinaryConnect's latent clip)
// With a learned scale, ∂ℓ/∂s = Σ ∂ℓ/∂w · w/s per channel. Backward (with the scale's gradient) and the post-step
// (with the new weights) each run as one fused pass over the tensor, parallel over its rows.
#include <ATen/Parallel.h>

#include <algorithm>

#include "bilevel/kernels/cpu/optim_loops.h"
#include "bilevel/kernels/quant_ops.h"
#include "bilevel/quant/element.h"
#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

using torch::Tensor;

namespace {

// Per-row loop over a weight tensor whose rows are output channels: fn(row, channel, begin, end) with [begin, end)
// the row's flat element range.
template <class Fn>
void for_rows(const Tensor& t, int64_t channels, Fn fn) {
  const int64_t rows = t.size(0), inner = t.numel() / rows;
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) fn(r, channels > 1 ? r : 0, r * inner, (r + 1) * inner);
  });
}

class SteSolver final : public WeightSolver {
 public:
  explicit SteSolver(double clip) : clip_(clip) {}
  std::string name() const override { return "ste"; }
  double saturation() const override { return clip_; }
  bool writes_scale_grad() const override { return true; }
  bool clears_weight_grad() const override { return true; }

  void backward(QuantParam& p, const Quantizer& q, const Tensor& g, const QuantClock&) const override {
    const auto [range_lo, range_hi] = range(q);
    const double lo = range_lo, hi = range_hi;  // plain variables: lambdas capture them (C++17)
    if (!p.latent.device().is_cpu()) {
      backward_on_device(p, g, lo, hi);
      return;
    }
    Tensor theta = p.latent.detach().contiguous(), w = p.weight.detach().contiguous();
    // g is the weights' gradient buffer: it is read once here and left zero for the next batch's accumulation.
    Tensor gc = g.contiguous();
    const bool clear = p.weight.grad().defined() && gc.data_ptr() == p.weight.grad().data_ptr();
    const Tensor s = p.grid.scale.detach().contiguous(), z = zero_of(p);
    // The latent's gradient buffer is reused from step to step (a fresh allocation of this size costs page faults).
    Tensor out = p.grad_cache.defined() && p.grad_cache.sizes() == theta.sizes() ? p.grad_cache : torch::empty_like(theta);
    const int64_t channels = s.numel(), rows = theta.size(0);
    std::vector<float> row_sums(p.learn_scale ? size_t(rows) : 0, 0.f);
    const float *tp = theta.data_ptr<float>(), *wp = w.data_ptr<float>();
    float* gp = gc.data_ptr<float>();
    const float *sp = s.data_ptr<float>(), *zp = z.data_ptr<float>();
    float* op = out.data_ptr<float>();
    for_rows(theta, channels, [&](int64_t r, int64_t c, int64_t b, int64_t e) {
      const float inv = 1.f / sp[c], zc = zp[c], flo = float(lo), fhi = float(hi);
      for (int64_t i = b; i < e; ++i) {  // branch-free, so the compiler vectorises it
        const float u = tp[i] * inv + zc;
        op[i] = gp[i] * (float(u >= flo) * float(u <= fhi));
      }
      if (!row_sums.empty()) row_sums[size_t(r)] = qe::dot8(gp + b, wp + b, e - b) * inv;
      if (clear) std::fill(gp + b, gp + e, 0.f);
    });
    p.latent.mutable_grad() = out;
    if (p.learn_scale) {
      Tensor sg = torch::zeros({channels});
      float* sgp = sg.data_ptr<float>();
      for (int64_t r = 0; r < rows; ++r) sgp[channels > 1 ? r : 0] += float(row_sums[size_t(r)]);
      p.grid.scale.mutable_grad() = sg.to(p.grid.scale.device());
    }
  }

  bool fuses_adam_step() const override { return true; }

  // backward, Adam and update in one pass: per element, the masked gradient (with backward's scale), Adam's step,
  // the latent clip and the re-quantized weight (with the stepped scale); ∂ℓ/∂w is left zero.
  void fused_adam_step(QuantParam& p, const Quantizer& q, const Tensor& g, const Tensor& scale_before,
                       const kernels::AdamElement& a, const Tensor& m, const Tensor& v) const override {
    torch::NoGradGuard no_grad;
    const auto [range_lo, range_hi] = range(q);
    const double lo = range_lo, hi = range_hi;  // plain variables: lambdas capture them (C++17)
    TORCH_CHECK(p.latent.is_contiguous() && p.weight.is_contiguous() && g.is_contiguous() && m.is_contiguous() &&
                    v.is_contiguous(), "ste: fused step needs contiguous tensors");
    const Tensor s0 = scale_before.contiguous(), s = p.grid.scale.detach().contiguous(), z = zero_of(p);
    float *tp = p.latent.data_ptr<float>(), *wp = p.weight.data_ptr<float>(), *gp = g.data_ptr<float>();
    float *mp = m.data_ptr<float>(), *vp = v.data_ptr<float>();
    const float *s0p = s0.data_ptr<float>(), *sp = s.data_ptr<float>(), *zp = z.data_ptr<float>();
    const kernels::CodeKind kind = builtin_code_spec(q).value().kind;  // the fused step is for built-in grids
    for_rows(p.latent, s.numel(), [&](int64_t, int64_t c, int64_t b, int64_t e) {
      kernels::cpu::SteChannel ch;
      ch.inv_scale_before = 1.f / s0p[c], ch.scale = sp[c], ch.zero = zp[c], ch.lo = float(lo), ch.hi = float(hi);
      if (kind == kernels::CodeKind::Uniform) ch.code_lo = float(q.code_min()), ch.code_hi = float(q.code_max());
      kernels::cpu::ste_adam_pass(tp + b, wp + b, gp + b, mp + b, vp + b, e - b, ch, kind, a);
    });
  }

  void update(QuantParam& p, const Quantizer& q, const QuantClock&) const override {
    torch::NoGradGuard no_grad;
    const auto [range_lo, range_hi] = range(q);
    const double lo = range_lo, hi = range_hi;  // plain variables: lambdas capture them (C++17)
    TORCH_CHECK(p.latent.is_contiguous() && p.weight.is_contiguous(), "ste: latent and weights must be contiguous");
    const Tensor s = p.grid.scale.detach().contiguous(), z = zero_of(p);
    float *tp = p.latent.data_ptr<float>(), *wp = p.weight.data_ptr<float>();
    const float *sp = s.data_ptr<float>(), *zp = z.data_ptr<float>();
    with_code(q, [&](auto code_of) {
      for_rows(p.latent, s.numel(), [&](int64_t, int64_t c, int64_t b, int64_t e) {
        const float sc = sp[c], zc = zp[c], tlo = (float(lo) - zc) * sc, thi = (float(hi) - zc) * sc, inv = 1.f / sc;
        for (int64_t i = b; i < e; ++i) {
          const float t = std::min(std::max(tp[i], tlo), thi);  // min/max: vectorisable
          tp[i] = t;
          wp[i] = sc * (code_of(t * inv + zc) - zc);
        }
      });
    });
  }

 private:
  std::pair<double, double> range(const Quantizer& q) const {
    if (q.name() == "binary" || q.name() == "ternary") return {-clip_, clip_};
    return {q.code_min(), q.code_max()};  // uniform and registered grids: the code range
  }
  // backward for tensors off the CPU: the masked gradient by the kernel (kernels/quant_ops.h), ∂ℓ/∂s = Σ ∂ℓ/∂w·w/s
  // per channel with LibTorch's operators, and ∂ℓ/∂w cleared when g is its buffer, as on the CPU.
  static void backward_on_device(QuantParam& p, const Tensor& g, double lo, double hi) {
    const Tensor theta = p.latent.detach().contiguous(), w = p.weight.detach().contiguous(), gc = g.contiguous();
    const Tensor s = p.grid.scale.detach().contiguous(), z = zero_of(p).to(theta.device());
    Tensor out = torch::empty_like(theta);
    kernels::ste_grad_out(gc, theta, s, z, lo, hi, out);
    if (p.learn_scale) {
      const Tensor dots = (gc * w).reshape({theta.size(0), -1}).sum(1);
      p.grid.scale.mutable_grad() = s.numel() > 1 ? dots / s : (dots.sum() / s).reshape({1});
    }
    if (p.weight.grad().defined() && g.data_ptr() == p.weight.grad().data_ptr()) p.weight.mutable_grad().zero_();
    p.latent.mutable_grad() = out;
  }
  static Tensor zero_of(const QuantParam& p) {
    return p.grid.zero.defined() ? p.grid.zero.detach().to(torch::kFloat32).contiguous()
                                 : torch::zeros({p.grid.scale.numel()});
  }
  double clip_;
};

}  // namespace

std::unique_ptr<WeightSolver> make_ste_solver(const ExperimentConfig& cfg) {
  return std::make_unique<SteSolver>(cfg.get<double>("quantization.ste.clip"));
}

}  // namespace bilevel
