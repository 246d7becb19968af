#include "bilevel/kernels/cpu/optim_loops.h"

#include <algorithm>

#include "bilevel/kernels/quant_element.h"
#include "bilevel/util/denormals.h"

#include "clones.h"  // each loop below is built for AVX-512, AVX2 and baseline x86-64

namespace bilevel::kernels::cpu {
namespace {

template <CodeKind K>
inline float code_of(float u, const SteChannel& c) {
  if constexpr (K == CodeKind::Binary) return qe::binary_code(u);
  else if constexpr (K == CodeKind::Ternary) return qe::ternary_code(u, qe::kTernaryThreshold);
  else return qe::uniform_code(u, c.code_lo, c.code_hi);
}

template <CodeKind K>
inline void ste_loop(float* __restrict theta, float* __restrict w, float* __restrict g, float* __restrict m,
                     float* __restrict v, int64_t n, const SteChannel c, const AdamElement a) {
  const float tlo = (c.lo - c.zero) * c.scale, thi = (c.hi - c.zero) * c.scale, inv = 1.f / c.scale;
  for (int64_t i = 0; i < n; ++i) {
    const float u = theta[i] * c.inv_scale_before + c.zero;
    const float grad = g[i] * (float(u >= c.lo) * float(u <= c.hi));
    const float t = std::min(std::max(adam_update(grad, m[i], v[i], theta[i], a), tlo), thi);
    theta[i] = t;
    w[i] = c.scale * (code_of<K>(t * inv + c.zero, c) - c.zero);
    g[i] = 0.f;
  }
}

}  // namespace

BILEVEL_CLONES
void adam_pass(float* __restrict p, float* __restrict m, float* __restrict v, const float* __restrict g, int64_t n,
               const AdamElement& a_) {
  FlushDenormals ftz;
  const AdamElement a = a_;
  for (int64_t i = 0; i < n; ++i) p[i] = adam_update(g[i], m[i], v[i], p[i], a);
}

BILEVEL_CLONES
void ste_adam_pass(float* theta, float* w, float* g, float* m, float* v, int64_t n, const SteChannel& c, CodeKind k,
                   const AdamElement& a) {
  FlushDenormals ftz;
  switch (k) {
    case CodeKind::Binary: ste_loop<CodeKind::Binary>(theta, w, g, m, v, n, c, a); break;
    case CodeKind::Ternary: ste_loop<CodeKind::Ternary>(theta, w, g, m, v, n, c, a); break;
    case CodeKind::Uniform: ste_loop<CodeKind::Uniform>(theta, w, g, m, v, n, c, a); break;
  }
}

}  // namespace bilevel::kernels::cpu
