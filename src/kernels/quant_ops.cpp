#include "bilevel/kernels/quant_ops.h"

#include <ATen/Parallel.h>

#include <stdexcept>
#include <string>

#include "bilevel/kernels/config.h"
#include "bilevel/kernels/cpu/quant_twins.h"
#include "check_tensors.h"
#include "cuda_entries.h"

#if BILEVEL_WITH_CUDA
#include "bilevel/kernels/cuda/launch.h"
#endif

namespace bilevel::kernels {

using torch::Tensor;

namespace {

// Runs cpu_part(begin, end) over chunks of n elements on LibTorch's threads, or cuda_part(stream) on the tensors'
// CUDA device; `like` gives the device.
template <class Cpu, class Cuda>
void dispatch(const char* entry, const Tensor& like, Cpu&& cpu_part, Cuda&& cuda_part) {
  if (like.is_cuda()) {
#if BILEVEL_WITH_CUDA
    cuda::launch_on(like.device(), entry, cuda_part);
#else
    (void)cuda_part;
#endif
    return;
  }
  at::parallel_for(0, like.numel(), kCpuGrain, [&](int64_t b, int64_t e) { cpu_part(b, e); });
}

const float* in(const Tensor& t) { return t.data_ptr<float>(); }
float* out_of(Tensor& t) { return t.data_ptr<float>(); }

}  // namespace

void quant_codes_out(const Tensor& theta, const Tensor& scale, const Tensor& zero, CodeSpec spec, const uint64_t* key,
                     Tensor& out) {
  check_tensors("quant_codes", {{"theta", &theta}, {"out", &out}}, true);
  const int64_t n = theta.numel(), channels = scale.numel();
  const Tensor z = zero.defined() ? zero : torch::zeros_like(scale);
  check_tensors("quant_codes", {{"scale", &scale}, {"zero", &z}}, true);
  if (scale.device() != theta.device())
    throw std::invalid_argument("bilevel::kernels::quant_codes: argument 'scale' is on " + scale.device().str() +
                                " but 'theta' is on " + theta.device().str());
  if (channels != 1 && (theta.dim() == 0 || channels != theta.size(0)))
    throw std::invalid_argument("bilevel::kernels::quant_codes: argument 'scale' has " + std::to_string(channels) +
                                " elements; expected 1 or theta.size(0)");
  if (spec.kind == CodeKind::Uniform && !(spec.lo <= spec.hi))
    throw std::invalid_argument("bilevel::kernels::quant_codes: empty code range [" + std::to_string(spec.lo) + ", " +
                                std::to_string(spec.hi) + "]");
  CodesArgs a{in(theta), in(scale), in(z), out_of(out), n, channels > 1 ? n / channels : n, spec, key != nullptr,
              key ? *key : 0};
  dispatch("quant_codes", theta, [&](int64_t b, int64_t e) { cpu::quant_codes(a, b, e); },
           [&](auto stream) {
#if BILEVEL_WITH_CUDA
             return cuda::launch_quant_codes(a, stream);
#else
             (void)stream;
             return 0;
#endif
           });
}

Tensor quant_codes(const Tensor& theta, const Tensor& scale, const Tensor& zero, CodeSpec spec, const uint64_t* key) {
  Tensor out = torch::empty_like(theta, at::MemoryFormat::Contiguous);
  quant_codes_out(theta, scale, zero, spec, key, out);
  return out;
}

#if BILEVEL_WITH_CUDA
#define BILEVEL_CUDA_PART(call) [&](cudaStream_t stream) { return cuda::call; }
#else
#define BILEVEL_CUDA_PART(call) [](auto) { return 0; }
#endif

void ste_grad_out(const Tensor& g, const Tensor& theta, double clip, Tensor& out) {
  check_tensors("ste_grad", {{"g", &g}, {"theta", &theta}, {"out", &out}}, true);
  const float c = float(clip);
  dispatch("ste_grad", g, [&](int64_t b, int64_t e) { cpu::ste_grad(in(g), in(theta), c, out_of(out), b, e); },
           BILEVEL_CUDA_PART(launch_ste_grad(in(g), in(theta), c, out_of(out), g.numel(), stream)));
}

void adaste_forward_out(const Tensor& u, double beta, double alpha, Tensor& w) {
  check_tensors("adaste_forward", {{"u", &u}, {"w", &w}}, true);
  const float be = float(beta), al = float(alpha);
  dispatch("adaste_forward", u, [&](int64_t b, int64_t e) { cpu::adaste_forward(in(u), be, al, out_of(w), b, e); },
           BILEVEL_CUDA_PART(launch_adaste_forward(in(u), be, al, out_of(w), u.numel(), stream)));
}

void adaste_grad_out(const Tensor& g, const Tensor& u, double beta, double alpha, double tau, Tensor& out) {
  check_tensors("adaste_grad", {{"g", &g}, {"u", &u}, {"out", &out}}, true);
  if (!(tau > 0)) throw std::invalid_argument("bilevel::kernels::adaste_grad: tau must be > 0");
  const float be = float(beta), al = float(alpha), ta = float(tau);
  dispatch("adaste_grad", g,
           [&](int64_t b, int64_t e) { cpu::adaste_grad(in(g), in(u), be, al, ta, out_of(out), b, e); },
           BILEVEL_CUDA_PART(launch_adaste_grad(in(g), in(u), be, al, ta, out_of(out), g.numel(), stream)));
}

void lsq_grads_out(const Tensor& g, const Tensor& u, double qn, double qp, Tensor& gv, Tensor& gs) {
  check_tensors("lsq_grads", {{"g", &g}, {"u", &u}, {"gv", &gv}, {"gs", &gs}}, true);
  const float n_ = float(qn), p_ = float(qp);
  dispatch("lsq_grads", g,
           [&](int64_t b, int64_t e) { cpu::lsq_grads(in(g), in(u), n_, p_, out_of(gv), out_of(gs), b, e); },
           BILEVEL_CUDA_PART(launch_lsq_grads(in(g), in(u), n_, p_, out_of(gv), out_of(gs), g.numel(), stream)));
}

void flip_codes_(Tensor& codes, const Tensor& m, double tau) {
  check_tensors("flip_codes_", {{"codes", &codes}, {"m", &m}}, true);
  const float t = float(tau);
  dispatch("flip_codes_", codes, [&](int64_t b, int64_t e) { cpu::flip_codes(out_of(codes), in(m), t, b, e); },
           BILEVEL_CUDA_PART(launch_flip_codes(out_of(codes), in(m), t, codes.numel(), stream)));
}

}  // namespace bilevel::kernels
