#include "bilevel/kernels/quant_ops.h"

#include <ATen/Parallel.h>

#include <stdexcept>
#include <string>

#include "bilevel/kernels/cpu/int_gemm.h"
#include "bilevel/kernels/cpu/quant_twins.h"
#include "dispatch.h"

namespace bilevel::kernels {

using torch::Tensor;

namespace {

// The element-wise entries below: chunks of kCpuGrain elements on the CPU.
template <class Cpu, class Cuda>
void dispatch(const char* entry, const Tensor& like, Cpu&& cpu_part, Cuda&& cuda_part) {
  dispatch_n(entry, like, like.numel(), kCpuGrain, cpu_part, cuda_part);
}

const float* in(const Tensor& t) { return t.data_ptr<float>(); }
float* out_of(Tensor& t) { return t.data_ptr<float>(); }

const float* checked_grid(const char* entry, const Tensor& theta, const Tensor& scale, const Tensor& zero) {
  return check_grid(entry, theta, scale, zero);
}

}  // namespace

#define BILEVEL_CUDA_PART(call) BILEVEL_CUDA_CALL(call)


void quant_codes_out(const Tensor& theta, const Tensor& scale, const Tensor& zero, CodeSpec spec, const uint64_t* key,
                     Tensor& out) {
  check_tensors("quant_codes", {{"theta", &theta}, {"out", &out}}, true);
  const float* const z = checked_grid("quant_codes", theta, scale, zero);
  const int64_t n = theta.numel(), channels = scale.numel();
  if (spec.kind == CodeKind::Uniform && !(spec.lo <= spec.hi))
    throw std::invalid_argument("bilevel::kernels::quant_codes: empty code range [" + std::to_string(spec.lo) + ", " +
                                std::to_string(spec.hi) + "]");
  CodesArgs a{in(theta), in(scale), z, out_of(out), n, channels > 1 ? n / channels : n, spec, key != nullptr,
              key ? *key : 0};
  dispatch("quant_codes", theta, [&](int64_t b, int64_t e) { cpu::quant_codes(a, b, e); },
           BILEVEL_CUDA_PART(launch_quant_codes(a, stream)));
}

Tensor quant_codes(const Tensor& theta, const Tensor& scale, const Tensor& zero, CodeSpec spec, const uint64_t* key) {
  Tensor out = torch::empty_like(theta, at::MemoryFormat::Contiguous);
  quant_codes_out(theta, scale, zero, spec, key, out);
  return out;
}

namespace {

void activation_codes(const ActCodesArgs& a, const Tensor& x) {
  dispatch("activation_codes", x,
           [&](int64_t b, int64_t e) {
             if (a.stochastic) return cpu::activation_codes(a, b, e);
             // Deterministic: integer inference's function, so a state gets the same code in both.
             ::bilevel::cpu::state_codes(a.x + b, e - b, a.offset, act_inv_step(a), a.lo, a.hi, a.out + b);
           },
           BILEVEL_CUDA_PART(launch_activation_codes(a, stream)));
}

}  // namespace

void activation_codes_out(const Tensor& x, double offset, double step, double lo, double hi, const uint64_t* key,
                          Tensor& out) {
  check_tensors("activation_codes", {{"x", &x}, {"out", &out}}, true);
  if (!(step > 0) || !(lo <= hi))
    throw std::invalid_argument("bilevel::kernels::activation_codes: step must be > 0 and lo <= hi");
  const ActCodesArgs a{in(x), out_of(out), x.numel(), float(offset), 1.f / float(step), float(lo), float(hi),
                       key != nullptr, key ? *key : 0};
  activation_codes(a, x);
}

void activation_codes_out(const Tensor& x, double offset, const Tensor& step, double lo, double hi,
                          const uint64_t* key, Tensor& out) {
  check_tensors("activation_codes", {{"x", &x}, {"out", &out}}, true);
  if (!step.defined() || step.numel() != 1 || step.scalar_type() != torch::kFloat32 || step.device() != x.device())
    throw std::invalid_argument("bilevel::kernels::activation_codes: argument 'step' must be one float32 element on " +
                                x.device().str() + " (x's device)");
  if (!(lo <= hi)) throw std::invalid_argument("bilevel::kernels::activation_codes: lo must be <= hi");
  const Tensor st = step.contiguous();
  ActCodesArgs a{in(x), out_of(out), x.numel(), float(offset), 0.f, float(lo), float(hi), key != nullptr,
                 key ? *key : 0};
  a.step = in(st);
  activation_codes(a, x);
}

void ste_grad_out(const Tensor& g, const Tensor& theta, const Tensor& scale, const Tensor& zero, double lo, double hi,
                  Tensor& out) {
  check_tensors("ste_grad", {{"g", &g}, {"theta", &theta}, {"out", &out}}, true);
  const float* const z = checked_grid("ste_grad", theta, scale, zero);
  const int64_t n = theta.numel(), channels = scale.numel();
  const SteArgs a{in(g), in(theta), in(scale), z, out_of(out), n, channels > 1 ? n / channels : n, float(lo),
                  float(hi)};
  dispatch("ste_grad", g, [&](int64_t b, int64_t e) { cpu::ste_grad(a, b, e); },
           BILEVEL_CUDA_PART(launch_ste_grad(a, stream)));
}

void adaste_forward_out(const Tensor& u, double beta, double alpha, Tensor& w) {
  check_tensors("adaste_forward", {{"u", &u}, {"w", &w}}, true);
  const float be = float(beta), al = float(alpha);
  dispatch("adaste_forward", u, [&](int64_t b, int64_t e) { cpu::adaste_forward(in(u), be, al, out_of(w), b, e); },
           BILEVEL_CUDA_PART(launch_adaste_forward(in(u), be, al, out_of(w), u.numel(), stream)));
}

void adaste_grad_out(const Tensor& g, const Tensor& u, double beta, double alpha, Tensor& out) {
  check_tensors("adaste_grad", {{"g", &g}, {"u", &u}, {"out", &out}}, true);
  const float be = float(beta), al = float(alpha);
  dispatch("adaste_grad", g, [&](int64_t b, int64_t e) { cpu::adaste_grad(in(g), in(u), be, al, out_of(out), b, e); },
           BILEVEL_CUDA_PART(launch_adaste_grad(in(g), in(u), be, al, out_of(out), g.numel(), stream)));
}

void lsq_grads_out(const Tensor& g, const Tensor& u, double qn, double qp, Tensor& gv, Tensor& gs) {
  check_tensors("lsq_grads", {{"g", &g}, {"u", &u}, {"gv", &gv}, {"gs", &gs}}, true);
  const float n_ = float(qn), p_ = float(qp);
  dispatch("lsq_grads", g,
           [&](int64_t b, int64_t e) { cpu::lsq_grads(in(g), in(u), n_, p_, out_of(gv), out_of(gs), b, e); },
           BILEVEL_CUDA_PART(launch_lsq_grads(in(g), in(u), n_, p_, out_of(gv), out_of(gs), g.numel(), stream)));
}

void prox_towards_(Tensor& q, const Tensor& u, double lambda) {
  check_tensors("prox_towards_", {{"q", &q}, {"u", &u}}, true);
  if (!(lambda >= 0)) throw std::invalid_argument("bilevel::kernels::prox_towards_: lambda must be >= 0");
  const float l = float(lambda);
  dispatch("prox_towards_", q, [&](int64_t b, int64_t e) { cpu::prox_towards(in(u), l, out_of(q), b, e); },
           BILEVEL_CUDA_PART(launch_prox_towards(in(u), l, out_of(q), q.numel(), stream)));
}

void flip_codes_(Tensor& codes, const Tensor& m, double tau) {
  check_tensors("flip_codes_", {{"codes", &codes}, {"m", &m}}, true);
  const float t = float(tau);
  dispatch("flip_codes_", codes, [&](int64_t b, int64_t e) { cpu::flip_codes(out_of(codes), in(m), t, b, e); },
           BILEVEL_CUDA_PART(launch_flip_codes(out_of(codes), in(m), t, codes.numel(), stream)));
}

}  // namespace bilevel::kernels
