// The GPU benchmarks of issue 11 item 7, as one Markdown report (stdout, and --out FILE):
//
//   1. every public fused entry (kernels/fused_ops.h, kernels/quant_ops.h, energy/fused_relaxation.h) against an
//      unfused sequence of LibTorch operators written here from the entry's equation, on the same random inputs:
//      median time per call, the speed-up, and the largest |fused − unfused| against a stated tolerance (a row
//      beyond it makes the program exit 1: a benchmark that times wrong results is worthless);
//   2. the time per training step of classic EP (784-512-10, T = 30, K = 10, batch 50; configs/fmnist_mlp_ep.yaml),
//      symmetric EP, dual propagation and quantized backprop (4-bit LSQ weights and activations) against backprop
//      on the same network, batch and device (benchmarks/epoch_timer.h: interleaved repetitions, median);
//   3. for a large network (784-4096-4096-10, batch 1024) the device's measured float32 matrix-product throughput
//      (torch::mm of [batch, width] × [width, width]) and the fraction of it that an EP step sustains, from the
//      step's count of product FLOPs.
//
// On a CUDA device each row is checked against the project's GPU targets (fused ≥ 2× unfused; an EP step ≤ 2× a backprop
// step; dual propagation ≤ 1.1×); on the CPU (the same code, timing the CPU twins) the figures come without a
// verdict. A missed target is reported, not an error (exit 0; --strict: exit 3).
//
//   bench_gpu [--device cpu|cuda] [--quick] [--reps R] [--batches N] [--large-hidden H] [--large-batch B]
//             [--large-batches N] [--sections kernels,epoch,depth,large] [--config FILE] [--out FILE] [--strict]
//             [key=value ...]
//
// Exit status: 0 done, 1 a fused result disagrees with its unfused sequence or a section failed, 2 bad usage,
// 3 (--strict) a target missed on a GPU.
//
// The program is this file (the command line, the sizes, the report's header and summary) and benchmarks/gpu/: the
// options, the report's formats, the timing, the kernel rows, and one file per section (gpu/gpu_bench.h).
#include <spdlog/spdlog.h>
#include <torch/cuda.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "bilevel/kernels/fused_ops.h"
#include "bilevel/run/build_info.h"
#include "bilevel/util/threads.h"
#include "gpu/gpu_bench.h"

using namespace bilevel;
using namespace bilevel::gpu_bench;
namespace K = bilevel::kernels;

namespace bilevel::gpu_bench {

GpuBench::GpuBench(Options o)
    : opt(std::move(o)),
      on_gpu(opt.device == "cuda"),
      dev(on_gpu ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU)),
      reps(opt.reps ? opt.reps : opt.quick ? 2 : on_gpu ? 5 : 3),
      batches(opt.batches ? opt.batches : opt.quick ? 4 : on_gpu ? 50 : 20),
      large_hidden(opt.large_hidden ? opt.large_hidden : opt.quick ? 256 : on_gpu ? 4096 : 512),
      large_batch(opt.large_batch ? opt.large_batch : opt.quick ? 64 : on_gpu ? 1024 : 256),
      large_batches(opt.large_batches ? opt.large_batches : opt.quick ? 2 : on_gpu ? 5 : 3),
      rows(opt.quick ? 256 : 1024),
      cols(opt.quick ? 1024 : 4096),
      relax_batches(opt.quick ? std::vector<int64_t>{50} : std::vector<int64_t>{50, 1024}),
      clock{on_gpu, reps, opt.quick ? 0.005 : on_gpu ? 0.02 : 0.05} {}

}  // namespace bilevel::gpu_bench

namespace {

// The report's title and its table of where the figures come from: date, device, driver, commit, LibTorch, the
// command line and the settings.
void write_header(GpuBench& b, int argc, char** argv, const ThreadSettings& threads) {
  Report& rep = b.rep;
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + shell_quote(argv[i]);
  const BuildInfo& bi = build_info();
  const DeviceInfo di = device_info(b.dev);
  rep.line("# bilevel GPU benchmarks (issue 11 item 7)");
  rep.line();
  rep.line("| | |");
  rep.line("|---|---|");
  rep.line("| date | " + utc_now() + " |");
  rep.line("| device | " + b.opt.device + ": " + di.name + " |");
  rep.line("| driver | " + di.driver + " |");
  rep.line("| commit | " + bi.git_commit + (bi.git_dirty ? " (with uncommitted changes)" : "") + " |");
  rep.line(std::string("| LibTorch | ") + TORCH_VERSION + " (CMake: " + bi.torch_cmake_version + "), CUDA toolkit " +
           (bi.cuda_toolkit_version.empty() ? "none" : bi.cuda_toolkit_version) + ", CUDA kernels " +
           (K::cuda_kernels_built() ? "linked" : "not built") + ", " + bi.build_type + " build |");
  rep.line("| command | `" + command + "` |");
  rep.line("| settings | " + std::to_string(b.reps) + " repetitions (median), " + std::to_string(at::get_num_threads()) +
           " CPU threads (" + threads.source + ")" + (b.opt.quick ? ", --quick sizes" : "") + " |");
  rep.line();
  if (!b.on_gpu) {
    rep.line("On the CPU the figures are for information: the targets are for a GPU, so no row gets a verdict.");
    rep.line();
  }
}

// The summary line: targets met (on a GPU), and whether every fused result agreed.
void write_summary(GpuBench& b) {
  std::string summary = "**Summary:** ";
  summary += b.on_gpu ? std::to_string(b.judged - b.misses) + " of " + std::to_string(b.judged) + " targets met"
                      : std::string("CPU run, no verdicts");
  if (b.status) summary += "; **errors above** (a fused result that disagrees with its unfused sequence, or a failed section)";
  else if (b.opt.sections.count("kernels")) summary += "; every fused result agrees with its unfused sequence";
  summary += ".";
  b.rep.line(summary);
}

// --out FILE: the report as printed (directories created); a failure is an error (status 1).
void write_out(GpuBench& b) {
  try {
    const std::filesystem::path p(b.opt.out);
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    std::ofstream f(p);
    f << b.rep.text.str();
    if (!f) throw std::runtime_error("cannot write " + b.opt.out);
    b.progress("report written to " + b.opt.out);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: %s\n", e.what());
    b.status = 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  try {
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      }
    opt = parse(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "bench_gpu: %s (see bench_gpu --help)\n", e.what());
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  // The CPU threads training uses (train.threads = 0): the kernel section's CPU twins and LibTorch operators run
  // on the same pool as the training steps.
  const ThreadSettings threads = apply_cpu_threads(0);
  const bool cuda_ok = torch::cuda::is_available();
  if (opt.device.empty()) opt.device = cuda_ok ? "cuda" : "cpu";
  if (opt.device == "cuda" && !cuda_ok) {
    std::fprintf(stderr, "bench_gpu: --device cuda, but LibTorch sees no CUDA device (a CPU-only LibTorch, or no GPU)\n");
    return 2;
  }
  GpuBench b(std::move(opt));
  write_header(b, argc, argv, threads);
  if (b.opt.sections.count("kernels")) b.kernel_section();
  if (b.opt.sections.count("epoch")) b.epoch_section();
  if (b.opt.sections.count("depth")) b.depth_section();
  if (b.opt.sections.count("large")) b.large_section();
  write_summary(b);
  if (!b.opt.out.empty()) write_out(b);
  if (b.status) return b.status;
  return b.opt.strict && b.misses > 0 ? 3 : 0;
}
