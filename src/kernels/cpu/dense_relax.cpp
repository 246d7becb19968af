// Picks the dense relaxation kernel's instruction set once, from the CPU the process runs on.
#include "bilevel/kernels/cpu/dense_relax.h"

namespace bilevel::cpu {

#if defined(__x86_64__) && defined(BILEVEL_HAVE_AVX2_KERNELS)
namespace avx2 {
RelaxStats dense_relax_rows(const DenseRelaxProblem&, float* const*, float* const*, int64_t, int64_t);
void apply_activation(Act, float, float, float*, int64_t);
void finish_rows(Act, float, float, float*, const float*, int64_t, int64_t, float*, const float*, float*);
}  // namespace avx2

namespace {
bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
}  // namespace

RelaxStats dense_relax_rows(const DenseRelaxProblem& p, float* const* state, float* const* scratch, int64_t begin,
                            int64_t end) {
  return cpu_has_avx2() ? avx2::dense_relax_rows(p, state, scratch, begin, end)
                        : generic::dense_relax_rows(p, state, scratch, begin, end);
}
void apply_activation(Act act, float lo, float hi, float* v, int64_t n) {
  cpu_has_avx2() ? avx2::apply_activation(act, lo, hi, v, n) : generic::apply_activation(act, lo, hi, v, n);
}
void finish_rows(Act act, float lo, float hi, float* v, const float* old, int64_t rows, int64_t n, float* change,
                 const float* older, float* change_older) {
  cpu_has_avx2() ? avx2::finish_rows(act, lo, hi, v, old, rows, n, change, older, change_older)
                 : generic::finish_rows(act, lo, hi, v, old, rows, n, change, older, change_older);
}
const char* dense_relax_isa() { return cpu_has_avx2() ? "avx2" : "generic"; }
#else
RelaxStats dense_relax_rows(const DenseRelaxProblem& p, float* const* state, float* const* scratch, int64_t begin,
                            int64_t end) {
  return generic::dense_relax_rows(p, state, scratch, begin, end);
}
void apply_activation(Act act, float lo, float hi, float* v, int64_t n) {
  generic::apply_activation(act, lo, hi, v, n);
}
void finish_rows(Act act, float lo, float hi, float* v, const float* old, int64_t rows, int64_t n, float* change,
                 const float* older, float* change_older) {
  generic::finish_rows(act, lo, hi, v, old, rows, n, change, older, change_older);
}
const char* dense_relax_isa() { return "generic"; }
#endif

}  // namespace bilevel::cpu
