#include "bilevel/kernels/cpu/quant_twins.h"

#include <algorithm>

namespace bilevel::kernels::cpu {
namespace {

// codes_element over [begin, end), with the spec's switch hoisted out of the loop (each grid's loop inlines its
// code function) and the channel's 1/s and z out of the inner loop (the same float operations, so the same codes).
template <CodeKind K>
void codes_loop(CodesArgs a, int64_t begin, int64_t end) {
  a.spec.kind = K;
  const bool per_channel = a.inner < a.n;
  for (int64_t i = begin; i < end;) {
    const int64_t c = per_channel ? i / a.inner : 0;
    const int64_t stop = per_channel ? std::min(end, (c + 1) * a.inner) : end;
    const float z = zero_at(a.zero, c);
    if (a.stochastic) {
      const float s = a.scale[c];
      for (; i < stop; ++i)
        a.out[i] = spec_code_stochastic(a.spec, a.theta[i] / s + z, counter_uniform(a.key, uint64_t(i)));
    } else {
      const float inv = 1.f / a.scale[c];
      for (; i < stop; ++i) a.out[i] = spec_code(a.spec, a.theta[i] * inv + z);
    }
  }
}

}  // namespace

void quant_codes(const CodesArgs& a, int64_t begin, int64_t end) {
  switch (a.spec.kind) {
    case CodeKind::Binary: codes_loop<CodeKind::Binary>(a, begin, end); break;
    case CodeKind::Ternary: codes_loop<CodeKind::Ternary>(a, begin, end); break;
    case CodeKind::Uniform: codes_loop<CodeKind::Uniform>(a, begin, end); break;
  }
}

void activation_codes(const ActCodesArgs& a, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) a.out[i] = act_codes_element(a, i);
}

void ste_grad(const SteArgs& a, int64_t begin, int64_t end) {
  const bool per_channel = a.inner < a.n;
  for (int64_t i = begin; i < end;) {  // the channel's 1/s and z hoisted, as in codes_loop
    const int64_t c = per_channel ? i / a.inner : 0;
    const int64_t stop = per_channel ? std::min(end, (c + 1) * a.inner) : end;
    const float inv = 1.f / a.scale[c], z = zero_at(a.zero, c);
    for (; i < stop; ++i) a.out[i] = a.g[i] * ste_mask(a.theta[i] * inv + z, a.lo, a.hi);
  }
}

void adaste_forward(const float* u, float beta, float alpha, float* w, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) w[i] = qe::adaste_forward(u[i], beta, alpha);
}

void adaste_grad(const float* g, const float* u, float beta, float alpha, float* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) out[i] = qe::adaste_grad(g[i], u[i], beta, alpha);
}

void lsq_grads(const float* g, const float* u, float qn, float qp, float* gv, float* gs, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    gv[i] = g[i] * qe::lsq_grad_v(u[i], qn, qp);
    gs[i] = g[i] * qe::lsq_grad_s(u[i], qn, qp);
  }
}

void prox_towards(const float* u, float lambda, float* q, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) q[i] = qe::prox_towards(u[i], q[i], lambda);
}

void flip_codes(float* codes, const float* m, float tau, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) codes[i] = qe::flip_code(codes[i], m[i], tau);
}

}  // namespace bilevel::kernels::cpu
