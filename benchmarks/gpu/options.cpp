#include "options.h"

#include "../epoch_timer.h"

namespace bilevel::gpu_bench {

const char* const kUsage =
    "usage: bench_gpu [--device cpu|cuda] [--quick] [--reps R] [--batches N] [--large-hidden H] [--large-batch B]\n"
    "                 [--large-batches N] [--sections kernels,epoch,depth,large] [--config FILE] [--out FILE] [--strict]\n"
    "                 [key=value ...]\n"
    "\n"
    "GPU benchmarks (issue 11 item 7), a Markdown report on stdout (and in FILE with --out):\n"
    "  kernels  each fused entry against the unfused LibTorch sequence it replaces (median time per call, speed-up,\n"
    "           max |fused - unfused| against a tolerance; beyond it the program exits 1)\n"
    "  epoch    time per training step of ep, ep (generic solver), ep_symmetric, dual_prop and 4-bit LSQ backprop\n"
    "           against backprop on CONFIG with model.hidden=[512] train.batch_size=50 solver.free_steps=30\n"
    "           solver.nudged_steps=10 (784-512-10, T = 30, K = 10), interleaved repetitions, median\n"
    "  large    the measured float32 matrix-product throughput and the fraction an EP step sustains on\n"
    "           784-H-H-10 at batch B\n"
    "On cuda every row is checked against the targets (fused >= 2x unfused, ep <= 2x backprop, dual_prop <= 1.1x);\n"
    "on cpu the figures come without a verdict.\n"
    "\n"
    "  --device D         cpu or cuda (default: cuda when LibTorch sees a CUDA device)\n"
    "  --quick            small sizes (a minute on a 2-core CPU)\n"
    "  --reps R           repetitions per measurement; the median is reported (default 5 on cuda, 3 on cpu, 2 quick)\n"
    "  --batches N        training steps per repetition in the epoch section (default 50 cuda, 20 cpu, 4 quick)\n"
    "  --large-hidden H   width of the large network's two hidden layers (default 4096 cuda, 512 cpu, 256 quick)\n"
    "  --large-batch B    its batch size (default 1024 cuda, 256 cpu, 64 quick)\n"
    "  --large-batches N  its training steps per repetition (default 5 cuda, 3 cpu, 2 quick)\n"
    "  --sections LIST    which sections, comma-separated (default kernels,epoch,depth,large)\n"
    "  --config FILE      the classic EP config (default configs/fmnist_mlp_ep.yaml)\n"
    "  --out FILE         also write the report to FILE (directories created)\n"
    "  --strict           exit 3 when a target is missed on cuda\n"
    "  key=value          further config overrides for the epoch and large sections (e.g. data.root=DIR)\n";

namespace {

int64_t positive(const std::string& flag, const std::string& v) {
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || n < 1) throw UsageError(flag + " needs a positive integer, not '" + v + "'");
  return n;
}

}  // namespace

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--device") {
      o.device = value();
      if (o.device != "cpu" && o.device != "cuda") throw UsageError("--device must be cpu or cuda, not '" + o.device + "'");
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--strict") {
      o.strict = true;
    } else if (a == "--reps") {
      o.reps = positive(a, value());
    } else if (a == "--batches") {
      o.batches = positive(a, value());
    } else if (a == "--large-hidden") {
      o.large_hidden = positive(a, value());
    } else if (a == "--large-batch") {
      o.large_batch = positive(a, value());
    } else if (a == "--large-batches") {
      o.large_batches = positive(a, value());
    } else if (a == "--sections") {
      o.sections.clear();
      for (const std::string& s : timing::split(value(), ',')) {
        if (s != "kernels" && s != "epoch" && s != "depth" && s != "large")
          throw UsageError("--sections: unknown section '" + s + "' (kernels, epoch, depth, large)");
        o.sections.insert(s);
      }
      if (o.sections.empty()) throw UsageError("--sections needs at least one of kernels, epoch, depth, large");
    } else if (a == "--config") {
      o.config = value();
    } else if (a == "--out") {
      o.out = value();
    } else if (a.rfind("--", 0) != 0 && a.find('=') != std::string::npos && a.front() != '=') {
      o.overrides.push_back(a);
    } else {
      throw UsageError("unknown argument '" + a + "'");
    }
  }
  return o;
}

}  // namespace bilevel::gpu_bench
