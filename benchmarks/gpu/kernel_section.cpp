#include <exception>
#include <string>

#include "bilevel/kernels/fused_ops.h"
#include "gpu_bench.h"
#include "kernel_cases.h"

namespace bilevel::gpu_bench {

namespace K = bilevel::kernels;

// 1. Every fused entry against its unfused LibTorch sequence: time, speed-up, and agreement within a tolerance.
void GpuBench::kernel_section() {
  progress("kernels");
  rep.line("## Fused kernels against the unfused LibTorch sequences");
  rep.line();
  rep.line("Median time per call over " + std::to_string(reps) +
           " repetitions (each long enough to time); the unfused sequence is LibTorch operators written from the "
           "entry's equation (writing into preallocated outputs where the fused entry does), run on the same "
           "inputs. `max diff` is the largest |fused − unfused| over all outputs; a row beyond its tolerance is an "
           "error. Target on a GPU: speed-up ≥ " + num("%.0f", kFusedMinSpeedup) + "×.");
  rep.line();
  if (on_gpu && !K::cuda_kernels_built()) {
    rep.line("**Error: this build has no CUDA kernels** (configure with -DBILEVEL_CUDA=ON against a CUDA LibTorch).");
    rep.line();
    status = 1;
  } else {
    try {
      rep.line("| entry | shape | fused | unfused (ops) | speed-up | max diff | tol | agree | ≥ 2× |");
      rep.line("|---|---|---|---|---|---|---|---|---|");
      for (KernelCase& c : kernel_cases(dev, rows, cols, relax_batches, 512)) {
        progress("  " + c.name);
        const double d = c.check();
        const bool agree = d <= c.tol;  // false for NaN
        if (!agree) status = 1;
        const auto [tf, tu] = clock.pair(c.fused, c.unfused);
        const double speedup = tu / tf;
        const bool ok = speedup >= kFusedMinSpeedup;
        if (on_gpu) {
          ++judged;
          misses += !ok;
        }
        rep.line("| " + c.name + " | " + c.shape + " | " + fmt_time(tf) + " | " + fmt_time(tu) + " (" + c.unfused_ops +
                 ") | " + num("%.2f×", speedup) + " | " + num("%.3g", d) + " | " + (c.tol == 0 ? std::string("0 (exact)") : num("%.0e", c.tol)) + " | " +
                 (agree ? "yes" : "**NO**") + " | " + verdict(on_gpu, ok) + " |");
      }
      rep.line();
      rep.line("Not timed: stochastic codes (the unfused sequence would need the counter-based stream in LibTorch "
               "operators) and the STE solver's fused Adam pass (CPU only).");
      rep.line();
    } catch (const std::exception& e) {
      rep.line();
      rep.line(std::string("**Error in the kernel section:** ") + message_of(e));
      rep.line();
      status = 1;
    }
  }
}

}  // namespace bilevel::gpu_bench
