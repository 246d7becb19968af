#include "bilevel/kernels/cpu/ste_twins.h"

#include <algorithm>

#include "bilevel/kernels/quant_element.h"

namespace bilevel::kernels::cpu {
namespace {

template <CodeKind K>
void update_loop(SteUpdateArgs a, int64_t begin, int64_t end) {
  a.spec.kind = K;  // the switch in spec_code folds away, so the loop vectorises
  const bool per_channel = a.inner < a.n;
  for (int64_t i = begin; i < end;) {
    const int64_t c = per_channel ? i / a.inner : 0;
    const int64_t stop = per_channel ? std::min(end, (c + 1) * a.inner) : end;
    const SteBox b = ste_box(a.scale[c], zero_at(a.zero, c), a.lo, a.hi);
    for (; i < stop; ++i) {
      const float t = clip_box(a.theta[i], b.tlo, b.thi);
      a.theta[i] = t;
      a.w[i] = ste_weight(a.spec, b, t);
    }
  }
}

}  // namespace

void ste_update(const SteUpdateArgs& a, int64_t begin, int64_t end) {
  switch (a.spec.kind) {
    case CodeKind::Binary: update_loop<CodeKind::Binary>(a, begin, end); break;
    case CodeKind::Ternary: update_loop<CodeKind::Ternary>(a, begin, end); break;
    case CodeKind::Uniform: update_loop<CodeKind::Uniform>(a, begin, end); break;
  }
}

void ste_backward_rows(const SteBackwardArgs& a, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t c = a.channels > 1 ? r : 0, b = r * a.inner, e = b + a.inner;
    const float inv = 1.f / a.scale[c], zc = zero_at(a.zero, c), lo = a.lo, hi = a.hi;
    const float* tp = a.theta;
    float* gp = a.g;
    float* op = a.out;
    for (int64_t i = b; i < e; ++i) op[i] = gp[i] * ste_mask(tp[i] * inv + zc, lo, hi);  // branch-free: vectorises
    if (a.row_sums) a.row_sums[r] = qe::dot8(gp + b, a.w + b, a.inner) * inv;
    if (a.clear) std::fill(gp + b, gp + e, 0.f);
  }
}

void scaled_row_dots(const float* g, const float* w, const float* scale, int64_t channels, int64_t inner, float* row,
                     int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r)
    row[r] = qe::dot8(g + r * inner, w + r * inner, inner) / scale[channels > 1 ? r : 0];
}

}  // namespace bilevel::kernels::cpu
