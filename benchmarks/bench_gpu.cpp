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
#include <spdlog/spdlog.h>
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/fused_relaxation.h"
#include "bilevel/energy/layered_energy.h"
#include "bilevel/energy/neuron.h"
#include "bilevel/kernels/config.h"
#include "bilevel/kernels/fused_ops.h"
#include "bilevel/kernels/quant_ops.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/nn/objective.h"
#include "bilevel/run/build_info.h"
#include "bilevel/util/error.h"
#include "bilevel/util/first_line.h"
#include "bilevel/util/threads.h"
#include "epoch_timer.h"

#if BILEVEL_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

using namespace bilevel;
using torch::Tensor;
using timing::median;
namespace K = bilevel::kernels;

namespace {

// The GPU targets (docs/gpu.md): what a fused kernel must gain, and how far a rule's step may exceed backprop's.
constexpr double kFusedMinSpeedup = 2.0;
constexpr double kEpMaxRatio = 2.0;
constexpr double kDualPropMaxRatio = 1.1;

const char* kUsage =
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

struct Options {
  std::string device;  // "" = auto
  bool quick = false, strict = false;
  int64_t reps = 0, batches = 0, large_hidden = 0, large_batch = 0, large_batches = 0;  // 0 = the default
  std::set<std::string> sections{"kernels", "epoch", "depth", "large"};
  std::string config = "configs/fmnist_mlp_ep.yaml", out;
  std::vector<std::string> overrides;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

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

// ---------------------------------------------------------------- the report

// Markdown to stdout as it is produced, and kept for --out.
struct Report {
  std::ostringstream text;
  void line(const std::string& s = "") {
    std::cout << s << "\n" << std::flush;
    text << s << "\n";
  }
};

std::string num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A time in the unit that suits it.
std::string fmt_time(double s) {
  if (s < 1e-3) return num("%.1f µs", s * 1e6);
  if (s < 1.0) return num("%.2f ms", s * 1e3);
  return num("%.2f s", s);
}

// A rate of floating-point operations in the unit that suits it.
std::string fmt_rate(double flops_per_s) {
  return flops_per_s >= 1e12 ? num("%.2f TFLOP/s", flops_per_s / 1e12) : num("%.2f GFLOP/s", flops_per_s / 1e9);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./,:+[]@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The first line of a command's output ("" when it fails or prints nothing).
std::string first_line_of(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return "";
  char buf[512];
  std::string out;
  if (fgets(buf, sizeof buf, p)) out = buf;
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string l;
  while (std::getline(f, l))
    if (l.rfind("model name", 0) == 0 && l.find(':') != std::string::npos) return l.substr(l.find(':') + 2);
  return "unknown CPU";
}

struct DeviceInfo {
  std::string name, driver;
};

DeviceInfo device_info(const torch::Device& dev) {
  DeviceInfo d;
  if (!dev.is_cuda()) {
    d.name = cpu_model();
    d.driver = "n/a";
    return d;
  }
  // nvidia-smi's first GPU (the name, the driver, the memory); with the CUDA runtime, the device's own properties.
  const std::string smi = first_line_of("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader");
  const auto parts = timing::split(smi, ',');
  d.name = parts.size() >= 1 ? parts[0] : "unknown GPU";
  d.driver = parts.size() >= 2 ? parts[1].substr(parts[1].find_first_not_of(' ')) : "unknown (nvidia-smi failed)";
#if BILEVEL_WITH_CUDA
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, dev.has_index() ? dev.index() : 0) == cudaSuccess) {
    d.name = std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
             std::to_string(p.multiProcessorCount) + " SMs, " +
             num("%.0f", double(p.totalGlobalMem) / double(1ull << 30)) + " GiB)";
  }
  int drv = 0;
  if (cudaDriverGetVersion(&drv) == cudaSuccess)
    d.driver += " (CUDA driver API " + std::to_string(drv / 1000) + "." + std::to_string(drv % 1000 / 10) + ")";
#endif
  return d;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// ---------------------------------------------------------------- timing

struct Clock {
  bool cuda = false;
  int64_t reps = 3;
  double target_s = 0.02;  // seconds of calls per repetition
  void sync() const {
    if (cuda) torch::cuda::synchronize();
  }
  double seconds_of(const std::function<void()>& fn, int64_t iters) const {
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) fn();
    sync();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // Calls per repetition so that one repetition of fn lasts about target_s (after one warm-up call).
  int64_t iterations(const std::function<void()>& fn) const {
    seconds_of(fn, 1);
    const double one = std::max(seconds_of(fn, 1), 1e-7);
    return std::clamp<int64_t>(int64_t(target_s / one), 1, 20000);
  }
  // Median seconds per call of a and of b over `reps` repetitions, a and b interleaved.
  std::pair<double, double> pair(const std::function<void()>& a, const std::function<void()>& b) const {
    const int64_t na = iterations(a), nb = iterations(b);
    std::vector<double> ta, tb;
    for (int64_t r = 0; r < reps; ++r) {
      ta.push_back(seconds_of(a, na) / double(na));
      tb.push_back(seconds_of(b, nb) / double(nb));
    }
    return {median(ta), median(tb)};
  }
  double single(const std::function<void()>& a) const {
    const int64_t n = iterations(a);
    std::vector<double> t;
    for (int64_t r = 0; r < reps; ++r) t.push_back(seconds_of(a, n) / double(n));
    return median(t);
  }
};

// ---------------------------------------------------------------- 1. kernels

// max |a − b| over all elements, in float64; +inf when shapes differ, NaN when either holds a NaN.
double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  if (a.numel() == 0) return 0.0;
  return (a.to(torch::kCPU, torch::kFloat64) - b.to(torch::kCPU, torch::kFloat64)).abs().max().item<double>();
}

// One row: the fused entry, the unfused LibTorch sequence of the same function, and a check that runs both on the
// same fresh inputs and returns the largest difference of their results.
struct KernelCase {
  std::string name, shape, unfused_ops;
  std::function<void()> fused, unfused;
  std::function<double()> check;
  double tol = 0.0;
};

// round half away from zero, as qe::round_half_away: sign(x)·floor(|x| + ½).
Tensor round_half_away(const Tensor& x) { return x.sign() * (x.abs() + 0.5).floor_(); }
// sign with sign(0) = +1, as float: 2·[x ≥ 0] − 1.
Tensor sign_pos(const Tensor& x) { return x.ge(0).to(torch::kFloat).mul_(2).sub_(1); }

// The relaxation benchmark's network: 784-hidden-10, sigmoid4, output a state (mse), as configs/fmnist_mlp_ep.yaml.
struct RelaxProblem {
  LayeredNet net{nullptr};
  std::unique_ptr<Objective> obj;
  std::unique_ptr<LayeredEnergy> energy;
  EnergyBatch batch;
  EnergyState free_state;
};

std::shared_ptr<RelaxProblem> make_relax_problem(int64_t hidden, int64_t B, torch::Device dev, int64_t free_steps) {
  auto p = std::make_shared<RelaxProblem>();
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  ModelConfig m;
  m.kind = "mlp";
  m.activation = "sigmoid4";
  m.hidden = {hidden};
  m.init = "default";
  m.init_gain = 1.0;
  p->net = LayeredNet(m, std::vector<int64_t>{1, 28, 28}, 10, true);
  p->net->to(torch::kFloat32);
  p->net->to(dev);
  p->obj = make_objective("mse");
  p->energy = std::make_unique<LayeredEnergy>(*p->net, Neuron::from_activation(p->net->rho()), *p->obj);
  const Tensor x = torch::rand({B, 1, 28, 28}).to(dev);
  const Tensor y = torch::randint(0, 10, {B}, torch::kLong).to(dev);
  p->energy->prepare(p->batch, x, y);
  p->energy->init_state(p->batch, p->free_state);
  FixedPointSolver(RelaxKernel::Generic).solve(*p->energy, p->batch, p->free_state, Nudge::none(), free_steps, 0.0);
  return p;
}

// Adds the relaxation rows: a free phase of T sweeps from zero states, or a nudged phase of K sweeps from the free
// equilibrium, fused (fused_relaxation) against FixedPointSolver's LibTorch-operator path (solver.kernel=generic).
void add_relax_case(std::vector<KernelCase>& cases, std::shared_ptr<RelaxProblem> p, const std::string& phase,
                    int64_t steps, int64_t hidden, int64_t B) {
  const Nudge nudge = phase == "free" ? Nudge::none() : Nudge::loss(0.1);
  if (!fused_relaxation_supported(*p->energy, p->batch, nudge)) return;
  auto st_f = std::make_shared<EnergyState>(), st_g = std::make_shared<EnergyState>();
  auto start = [p, phase](EnergyState& st) {
    if (phase == "free") p->energy->init_state(p->batch, st);
    else st.copy_from(p->free_state);
  };
  KernelCase c;
  c.name = "fused_relaxation, " + phase + " phase (" + std::to_string(steps) + " sweeps)";
  c.shape = "784-" + std::to_string(hidden) + "-10 sigmoid4, batch " + std::to_string(B);
  c.unfused_ops = "FixedPointSolver, solver.kernel=generic";
  c.fused = [=] {
    torch::NoGradGuard ng;
    start(*st_f);
    fused_relaxation(*p->energy, p->batch, *st_f, nudge, steps, 0.0);
  };
  c.unfused = [=] {
    torch::NoGradGuard ng;
    start(*st_g);
    FixedPointSolver(RelaxKernel::Generic).solve(*p->energy, p->batch, *st_g, nudge, steps, 0.0);
  };
  c.check = [=] {
    c.fused();
    c.unfused();
    double d = 0;
    for (size_t k = 0; k < st_f->s.size(); ++k) d = std::max(d, max_abs_diff(st_f->s[k], st_g->s[k]));
    return d;
  };
  c.tol = 1e-4;  // states in [0, 1] after T sweeps, summed in another order
  cases.push_back(std::move(c));
}

std::vector<KernelCase> kernel_cases(torch::Device dev, int64_t rows, int64_t cols, const std::vector<int64_t>& relax_batches,
                                     int64_t relax_hidden) {
  std::vector<KernelCase> cases;
  const auto opt = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(cols) + "] f32";
  auto randn = [&](double scale) { return (torch::randn({rows, cols}) * scale).to(dev); };
  auto empty = [&] { return torch::empty({rows, cols}, opt); };
  torch::manual_seed(7);

  // ---- dual propagation's dyad: s⁺ = ρ(u + ᾱf), s⁻ = ρ(u − αf), δ = s⁺ − s⁻, s̄ = s⁻ + αδ (α = ½)
  for (const std::string act : {"relu", "sigmoid4"}) {
    const double alpha = 0.5;
    const Tensor u = randn(2.0), f = randn(1.5);
    auto bufs = std::make_shared<std::vector<Tensor>>(std::vector<Tensor>{empty(), empty(), empty(), empty()});
    const K::ActParams rho = K::act_of(act);
    auto rho_ = [act](Tensor& t) {
      if (act == "relu") t.relu_();
      else t.sub_(0.5).mul_(4).sigmoid_();  // sigmoid(4 (x − ½))
    };
    KernelCase c;
    c.name = "dyad_update (" + act + ", α = ½)";
    c.shape = shape;
    c.unfused_ops = act == "relu" ? "add, relu, sub, relu, sub, add" : "add, sub, mul, sigmoid ×2, sub, add";
    c.fused = [=] { K::dyad_update_out(u, f, alpha, rho, (*bufs)[0], (*bufs)[1]); };
    c.unfused = [=] {
      Tensor sp = at::add(u, f, 1.0 - alpha), sm = at::sub(u, f, alpha);
      rho_(sp);
      rho_(sm);
      at::sub_out((*bufs)[2], sp, sm);
      at::add_out((*bufs)[3], sm, (*bufs)[2], alpha);
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return std::max(max_abs_diff((*bufs)[0], (*bufs)[2]), max_abs_diff((*bufs)[1], (*bufs)[3]));
    };
    c.tol = 1e-5;  // ρ's exp: libm / CUDA against LibTorch's vectorised one, a few ulps
    cases.push_back(std::move(c));
  }

  // ---- the fixed-point sweep's epilogue: v ← h(v) in place, and max |h(v) − s_old|
  for (const std::string act : {"sigmoid", "hard_sigmoid"}) {
    const Tensor v0 = randn(3.0), s_old = torch::rand({rows, cols}).to(dev);
    auto vf = std::make_shared<Tensor>(v0.clone()), vu = std::make_shared<Tensor>(v0.clone());
    auto rf = std::make_shared<double>(0), ru = std::make_shared<double>(0);
    const K::ActParams h = act == "sigmoid" ? K::ActParams{K::Act::Sigmoid} : K::ActParams{K::Act::Clip, 0.0, 1.0};
    KernelCase c;
    c.name = "state_update_ (" + act + ")";
    c.shape = shape;
    c.unfused_ops = std::string(act == "sigmoid" ? "sigmoid_" : "clamp_") + ", sub, abs, max, item";
    c.fused = [=] { *rf = K::state_update_(*vf, s_old, h); };
    c.unfused = [=] {
      if (act == "sigmoid") vu->sigmoid_();
      else vu->clamp_(0.0, 1.0);
      *ru = (*vu - s_old).abs().max().item<double>();
    };
    c.check = [=] {
      vf->copy_(v0);
      vu->copy_(v0);
      c.fused();
      c.unfused();
      return std::max(max_abs_diff(*vf, *vu), std::abs(*rf - *ru));
    };
    c.tol = 1e-5;
    cases.push_back(std::move(c));
  }

  // ---- the compact relaxation's epilogue per example: v ← h(v), change[r] ← max(change[r], max_j |h(v) − s_old|)
  {
    const Tensor v0 = randn(3.0), s_old = torch::rand({rows, cols}).to(dev);
    auto vf = std::make_shared<Tensor>(v0.clone()), vu = std::make_shared<Tensor>(v0.clone());
    auto cf = std::make_shared<Tensor>(torch::zeros({rows}, opt)), cu = std::make_shared<Tensor>(torch::zeros({rows}, opt));
    const K::ActParams h{K::Act::Sigmoid};
    KernelCase c;
    c.name = "state_update_rows_ (sigmoid)";
    c.shape = shape;
    c.unfused_ops = "sigmoid_, sub, abs, amax(1), maximum";
    c.fused = [=] { K::state_update_rows_(*vf, s_old, h, *cf); };
    c.unfused = [=] {
      vu->sigmoid_();
      *cu = at::maximum(*cu, (*vu - s_old).abs().amax(1));
    };
    c.check = [=] {
      vf->copy_(v0);
      vu->copy_(v0);
      cf->zero_();
      cu->zero_();
      c.fused();
      c.unfused();
      return std::max(max_abs_diff(*vf, *vu), max_abs_diff(*cf, *cu));
    };
    c.tol = 1e-5;
    cases.push_back(std::move(c));
  }

  // ---- quantizer codes: q(θ·(1/s_c) + z_c), z undefined (0)
  {
    const Tensor theta = randn(0.1), scale = (torch::rand({rows}) * 0.03 + 0.02).to(dev);
    auto out = std::make_shared<Tensor>(empty()), ref = std::make_shared<Tensor>(empty());
    const K::CodeSpec spec{K::CodeKind::Uniform, -8.f, 7.f};
    KernelCase c;
    c.name = "quant_codes (uniform 4-bit, per channel)";
    c.shape = shape;
    c.unfused_ops = "reciprocal, mul, clamp, sign, abs, add, floor, mul";
    c.fused = [=] { K::quant_codes_out(theta, scale, Tensor(), spec, nullptr, *out); };
    c.unfused = [=] {
      Tensor x = theta * scale.reciprocal().unsqueeze(1);
      x.clamp_(spec.lo, spec.hi);
      at::mul_out(*ref, x.sign(), (x.abs() + 0.5).floor_());
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    c.tol = 0.0;  // integer codes from the same float operations
    cases.push_back(std::move(c));
  }
  {
    const Tensor theta = randn(0.1), scale = torch::full({1}, 0.05f).to(dev);
    auto out = std::make_shared<Tensor>(empty()), ref = std::make_shared<Tensor>(empty());
    KernelCase c;
    c.name = "quant_codes (binary, per tensor)";
    c.shape = shape;
    c.unfused_ops = "reciprocal, mul, ge, to float, mul, sub";
    c.fused = [=] { K::quant_codes_out(theta, scale, Tensor(), K::CodeSpec{K::CodeKind::Binary}, nullptr, *out); };
    c.unfused = [=] { *ref = sign_pos(theta * scale.reciprocal()); };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    cases.push_back(std::move(c));
  }
  // ---- the activation quantizer's codes: round(clip((x − offset)/step, lo, hi)), deterministic
  {
    const Tensor x = (torch::rand({rows, cols}) * 1.2 - 0.1).to(dev);
    const double offset = 0.0, step = 0.0625, lo = 0, hi = 15;
    auto out = std::make_shared<Tensor>(empty()), ref = std::make_shared<Tensor>(empty());
    KernelCase c;
    c.name = "activation_codes (uniform 4-bit)";
    c.shape = shape;
    c.unfused_ops = "sub, mul, clamp, sign, abs, add, floor, mul";
    c.fused = [=] { K::activation_codes_out(x, offset, step, lo, hi, nullptr, *out); };
    c.unfused = [=] {
      Tensor v = (x - offset).mul_(1.f / float(step));
      v.clamp_(lo, hi);
      at::mul_out(*ref, v.sign(), (v.abs() + 0.5).floor_());
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    cases.push_back(std::move(c));
  }
  // ---- the STE solver's backward: g·1[lo ≤ θ·(1/s_c) ≤ hi]
  {
    const Tensor g = randn(1.0), theta = randn(0.1), scale = (torch::rand({rows}) * 0.1 + 0.05).to(dev);
    auto out = std::make_shared<Tensor>(empty()), ref = std::make_shared<Tensor>(empty());
    KernelCase c;
    c.name = "ste_grad (per channel)";
    c.shape = shape;
    c.unfused_ops = "reciprocal, mul, ge, le, and, mul";
    c.fused = [=] { K::ste_grad_out(g, theta, scale, Tensor(), -1.0, 1.0, *out); };
    c.unfused = [=] {
      const Tensor u = theta * scale.reciprocal().unsqueeze(1);
      at::mul_out(*ref, g, u.ge(-1.0).logical_and_(u.le(1.0)));
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    cases.push_back(std::move(c));
  }
  // ---- AdaSTE: w*(u) = clip((u + β(1+α)·sign u)/(1+β), −1, 1), and its adaptive backward σ(u, g)·g
  {
    const double beta = 0.5, alpha = 0.01;
    const float k = float(beta) * (1.f + float(alpha)), den = 1.f + float(beta);
    auto w_star = [k, den](const Tensor& u) { return (u + sign_pos(u).mul_(k)).div_(den).clamp_(-1.0, 1.0); };
    const Tensor u = randn(1.0), g = randn(1.0);
    auto out = std::make_shared<Tensor>(empty()), ref = std::make_shared<Tensor>(empty());
    auto gout = std::make_shared<Tensor>(empty()), gref = std::make_shared<Tensor>(empty());
    KernelCase c;
    c.name = "adaste_forward";
    c.shape = shape;
    c.unfused_ops = "ge, to float, mul, sub, mul, add, div, clamp";
    c.fused = [=] { K::adaste_forward_out(u, beta, alpha, *out); };
    c.unfused = [=] { *ref = w_star(u); };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    c.tol = 1e-6;  // a division by 1 + β: LibTorch's CUDA multiplies by the reciprocal (1 ulp)
    cases.push_back(std::move(c));
    KernelCase d;
    d.name = "adaste_grad";
    d.shape = shape;
    d.unfused_ops = "abs, mul, gt, ge, 2 × (mul, add, div, minimum), 3 × where, mul";
    d.fused = [=] { K::adaste_grad_out(g, u, beta, alpha, *gout); };
    d.unfused = [=] {  // the case table of kernels/quant_element.h (β·α < 1 here) in LibTorch's operators
      const float b = float(beta), ba = float(beta) * float(alpha);
      const Tensor a = u.abs(), inward = (g * u).gt(0), sat = a.ge(1.f - ba);
      const Tensor half = torch::full({}, 0.5f, a.options());
      const Tensor in = torch::where(sat, torch::minimum(half, (1.f + 2.f * b + ba) / ((1.f + b) * a)),
                                     torch::minimum(half, (a + 2.f * b * (1.f + float(alpha))) / ((1.f + b) * a)));
      const Tensor out = torch::where(sat, torch::zeros({}, a.options()), torch::full({}, 1.f / (1.f + b), a.options()));
      *gref = torch::where(inward, in, out) * g;
    };
    d.check = [=] {
      d.fused();
      d.unfused();
      return max_abs_diff(*gout, *gref);
    };
    d.tol = 1e-6;  // the same float operations; LibTorch's CUDA division may differ by an ulp
    cases.push_back(std::move(d));
  }
  // ---- LSQ on u = v/s, range [−Q_N, Q_P]: gv = g·1[inside], gs = g·(round(u) − u inside, −Q_N / Q_P outside)
  {
    const double qn = 8, qp = 7;
    const Tensor g = randn(1.0), u = randn(5.0);
    auto gv = std::make_shared<Tensor>(empty()), gs = std::make_shared<Tensor>(empty());
    auto rv = std::make_shared<Tensor>(empty()), rs = std::make_shared<Tensor>(empty());
    KernelCase c;
    c.name = "lsq_grads";
    c.shape = shape;
    c.unfused_ops = "ge, le, and, mul, sign, abs, add, floor, mul, sub, le, masked_fill, ge, masked_fill, mul";
    c.fused = [=] { K::lsq_grads_out(g, u, qn, qp, *gv, *gs); };
    c.unfused = [=] {
      at::mul_out(*rv, g, u.ge(-qn).logical_and_(u.le(qp)));
      Tensor ds = round_half_away(u).sub_(u);
      ds.masked_fill_(u.le(-qn), -qn).masked_fill_(u.ge(qp), qp);
      at::mul_out(*rs, g, ds);
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return std::max(max_abs_diff(*gv, *rv), max_abs_diff(*gs, *rs));
    };
    cases.push_back(std::move(c));
  }
  // ---- ProxQuant's prox step in place: q ← q + sign(u − q)·max(|u − q| − λ, 0)
  {
    const double lambda = 0.25;
    const Tensor u = randn(1.0), q0 = round_half_away(u);
    auto qf = std::make_shared<Tensor>(q0.clone()), qu = std::make_shared<Tensor>(q0.clone());
    KernelCase c;
    c.name = "prox_towards_";
    c.shape = shape;
    c.unfused_ops = "sub, abs, sub, clamp_min, sign, mul, add_";
    c.fused = [=] { K::prox_towards_(*qf, u, lambda); };
    c.unfused = [=] {
      const Tensor d = u - *qu;
      qu->add_(d.sign() * (d.abs().sub_(lambda).clamp_min_(0.0)));
    };
    c.check = [=] {
      qf->copy_(q0);
      qu->copy_(q0);
      c.fused();
      c.unfused();
      return max_abs_diff(*qf, *qu);
    };
    cases.push_back(std::move(c));
  }
  // ---- the flip rule in place: codes_i ← −codes_i where m_i·codes_i > τ
  {
    const double tau = 0.0625;
    const Tensor m = randn(0.1), c0 = sign_pos(randn(1.0));
    auto cf = std::make_shared<Tensor>(c0.clone()), cu = std::make_shared<Tensor>(c0.clone());
    KernelCase c;
    c.name = "flip_codes_";
    c.shape = shape;
    c.unfused_ops = "mul, gt, to float, mul, add, mul_";
    c.fused = [=] { K::flip_codes_(*cf, m, tau); };
    c.unfused = [=] { cu->mul_((m * *cu).gt(tau).to(torch::kFloat).mul_(-2).add_(1)); };
    c.check = [=] {
      cf->copy_(c0);
      cu->copy_(c0);
      c.fused();
      c.unfused();
      return max_abs_diff(*cf, *cu);
    };
    cases.push_back(std::move(c));
  }
  // ---- the fused relaxation (784-hidden-10 sigmoid4, T = 30 free sweeps; K = 10 nudged sweeps at the first batch)
  for (size_t i = 0; i < relax_batches.size(); ++i) {
    const int64_t B = relax_batches[i];
    auto p = make_relax_problem(relax_hidden, B, dev, 30);
    add_relax_case(cases, p, "free", 30, relax_hidden, B);
    if (i == 0) add_relax_case(cases, p, "nudged", 10, relax_hidden, B);
  }
  return cases;
}

// ---------------------------------------------------------------- 3. FLOPs of a step

// Matrix-product FLOPs (2 per multiply-add; element-wise work not counted) of one training step on an MLP with
// widths n_0 (input), n_1, ..., n_L (output), batch B, output a state (mse), writing P = Σ_{l=1}^{L−1} n_l n_{l+1}
// (the products between states) and P_0 = n_0 n_1 (the input layer):
//
//   EP, one-sided, T free and K nudged sweeps of the fixed-point dynamics (energy/fixed_point_solver.h):
//     the input drive A_0 x once per batch:              2 B P_0
//     every sweep, each layer l ≥ 1 forward A_l s_l and feedback A_lᵀ s_{l+1}:  (T + K) · 4 B P
//     the weight gradients (LayeredEnergy::add_phi_grad_diff): one product on s_1⁺ − s_1⁰ for the input layer,
//     two (one per phase) for each layer above:          2 B P_0 + 4 B P
//     total  4 B P_0 + (4 (T + K) + 4) B P
//   backprop: forward 2 B (P_0 + P), weight gradients 2 B (P_0 + P), input gradients of layers l ≥ 1 2 B P:
//     total  4 B P_0 + 6 B P
double ep_step_flops(const std::vector<int64_t>& n, int64_t B, int64_t T, int64_t K) {
  double P = 0;
  for (size_t l = 1; l + 1 < n.size(); ++l) P += double(n[l]) * double(n[l + 1]);
  const double P0 = double(n[0]) * double(n[1]);
  return 4.0 * B * P0 + (4.0 * double(T + K) + 4.0) * B * P;
}
double backprop_step_flops(const std::vector<int64_t>& n, int64_t B) {
  double P = 0;
  for (size_t l = 1; l + 1 < n.size(); ++l) P += double(n[l]) * double(n[l + 1]);
  const double P0 = double(n[0]) * double(n[1]);
  return 4.0 * B * P0 + 6.0 * B * P;
}

// An exception's message without LibTorch's backtrace (its first line).
std::string message_of(const std::exception& e) { return first_line(e.what()); }

std::string verdict(bool judged, bool ok) { return judged ? (ok ? "pass" : "**FAIL**") : "—"; }

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
  const bool on_gpu = opt.device == "cuda";
  const torch::Device dev = on_gpu ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);

  // Sizes: the classic 784-512-10 setting at full batch count on a GPU; fewer batches on the CPU; few with --quick.
  const int64_t reps = opt.reps ? opt.reps : opt.quick ? 2 : on_gpu ? 5 : 3;
  const int64_t batches = opt.batches ? opt.batches : opt.quick ? 4 : on_gpu ? 50 : 20;
  const int64_t large_hidden = opt.large_hidden ? opt.large_hidden : opt.quick ? 256 : on_gpu ? 4096 : 512;
  const int64_t large_batch = opt.large_batch ? opt.large_batch : opt.quick ? 64 : on_gpu ? 1024 : 256;
  const int64_t large_batches = opt.large_batches ? opt.large_batches : opt.quick ? 2 : on_gpu ? 5 : 3;
  const int64_t rows = opt.quick ? 256 : 1024, cols = opt.quick ? 1024 : 4096;
  const std::vector<int64_t> relax_batches = opt.quick ? std::vector<int64_t>{50} : std::vector<int64_t>{50, 1024};
  Clock clock{on_gpu, reps, opt.quick ? 0.005 : on_gpu ? 0.02 : 0.05};

  Report rep;
  int status = 0;
  int misses = 0, judged = 0;
  auto progress = [](const std::string& s) { std::fprintf(stderr, "bench_gpu: %s\n", s.c_str()); };

  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + shell_quote(argv[i]);
  const BuildInfo& bi = build_info();
  const DeviceInfo di = device_info(dev);
  rep.line("# bilevel GPU benchmarks (issue 11 item 7)");
  rep.line();
  rep.line("| | |");
  rep.line("|---|---|");
  rep.line("| date | " + utc_now() + " |");
  rep.line("| device | " + opt.device + ": " + di.name + " |");
  rep.line("| driver | " + di.driver + " |");
  rep.line("| commit | " + bi.git_commit + (bi.git_dirty ? " (with uncommitted changes)" : "") + " |");
  rep.line(std::string("| LibTorch | ") + TORCH_VERSION + " (CMake: " + bi.torch_cmake_version + "), CUDA toolkit " +
           (bi.cuda_toolkit_version.empty() ? "none" : bi.cuda_toolkit_version) + ", CUDA kernels " +
           (K::cuda_kernels_built() ? "linked" : "not built") + ", " + bi.build_type + " build |");
  rep.line("| command | `" + command + "` |");
  rep.line("| settings | " + std::to_string(reps) + " repetitions (median), " + std::to_string(at::get_num_threads()) +
           " CPU threads (" + threads.source + ")" + (opt.quick ? ", --quick sizes" : "") + " |");
  rep.line();
  if (!on_gpu) {
    rep.line("On the CPU the figures are for information: the targets are for a GPU, so no row gets a verdict.");
    rep.line();
  }

  // ---- 1. kernels
  if (opt.sections.count("kernels")) {
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

  const std::vector<std::string> dev_override{"train.device=" + opt.device};
  auto with_extra = [&](std::vector<std::string> o) {
    o.insert(o.end(), dev_override.begin(), dev_override.end());
    o.insert(o.end(), opt.overrides.begin(), opt.overrides.end());  // the user's last: they win
    return o;
  };

  // ---- 2. epoch time
  if (opt.sections.count("epoch")) {
    progress("epoch");
    rep.line("## Training step time against backprop (784-512-10, T = 30, K = 10, batch 50)");
    rep.line();
    try {
      const auto overrides = with_extra({"model.hidden=[512]", "train.batch_size=50", "solver.free_steps=30",
                                         "solver.nudged_steps=10"});
      const std::vector<std::string> variants{
          "backprop",
          "ep",
          "ep+solver.kernel=generic",
          "ep_symmetric",
          "dual_prop+rule.alpha=0.5+rule.beta=0.1+rule.inference=closed_form",
          "backprop+quantization.enabled=true+quantization.weights.quantizer=uniform+quantization.weights.bits=4+"
          "quantization.weights.solver=lsq+quantization.weights.granularity=per_channel+"
          "quantization.activations.quantizer=uniform+quantization.activations.bits=4+"
          "quantization.activations.solver=lsq"};
      const std::vector<std::string> labels{"backprop",
                                            "ep (solver.kernel=auto)",
                                            "ep (solver.kernel=generic)",
                                            "ep_symmetric",
                                            "dual_prop (α = ½, β = 0.1, closed form)",
                                            "backprop, 4-bit LSQ weights and activations"};
      ExperimentConfig base = load_config(opt.config, overrides);
      const auto times = timing::time_variants(opt.config, overrides, variants, batches, reps);
      const int64_t train_size = timing::data_of(base).train.size();
      const double per_epoch = std::ceil(double(train_size) / double(base.train.batch_size));
      rep.line("`" + opt.config + "` with `model.hidden=[512] train.batch_size=50 solver.free_steps=30 "
               "solver.nudged_steps=10 train.device=" + opt.device + "`, each variant's own overrides below; " +
               std::to_string(batches) + " training steps (gradient estimate + optimizer step, with each batch's "
               "copy to the device) per repetition, variants interleaved, median of " + std::to_string(reps) +
               " (after a dropped warm-up). The epoch estimate is that × " + num("%.0f", per_epoch) +
               " batches (evaluation not included). Targets on a GPU: ep ≤ " + num("%.0f", kEpMaxRatio) +
               "× backprop, dual_prop ≤ " + num("%.1f", kDualPropMaxRatio) + "×.");
      rep.line();
      rep.line("| variant | overrides | per step | epoch (est.) | × backprop | target | verdict |");
      rep.line("|---|---|---|---|---|---|---|");
      const double bp = median(times[0]);
      for (size_t v = 0; v < variants.size(); ++v) {
        const double m = median(times[v]), ratio = m / bp;
        double target = 0;
        if (variants[v] == "ep") target = kEpMaxRatio;
        if (variants[v].rfind("dual_prop", 0) == 0) target = kDualPropMaxRatio;
        const bool ok = ratio <= target;
        if (on_gpu && target > 0) {
          ++judged;
          misses += !ok;
        }
        auto parts = timing::split(variants[v], '+');
        std::string ov = "rule.name=" + parts[0];
        for (size_t i = 1; i < parts.size(); ++i) ov += " " + parts[i];
        rep.line("| " + labels[v] + " | `" + ov + "` | " + fmt_time(m) + " | " + fmt_time(m * per_epoch) + " | " +
                 num("%.2f", ratio) + " | " + (target > 0 ? num("≤ %.1f", target) : "—") + " | " +
                 verdict(on_gpu && target > 0, ok) + " |");
      }
      rep.line();
    } catch (const std::exception& e) {
      rep.line(std::string("**Error in the epoch section:** ") + message_of(e));
      rep.line();
      status = 1;
    }
  }

  // ---- 2b. EP at every depth: each depth config's rule against backprop on the same network (the targets of
  // docs/results/ep-depth.md, the same on every device)
  if (opt.sections.count("depth")) {
    progress("depth");
    rep.line("## EP at every depth: each config's rule against backprop on the same network");
    rep.line();
    struct DepthCase {
      std::string label, config;
      std::vector<std::string> overrides;
      std::string rule;
      double target;
    };
    const std::vector<DepthCase> depth_cases{
        {"784-512-512-10", "configs/fmnist_mlp_ep_deep.yaml", {}, "ep_symmetric", 3.0},
        {"784-512-512-512-10", "configs/fmnist_mlp_ep_deep.yaml", {"model.hidden=[512,512,512]"}, "ep_symmetric", 3.0},
        {"784-2048-2048-10", "configs/fmnist_mlp_ep_wide.yaml", {}, "ep_symmetric", 5.0},
        {"conv 16-32", "configs/fmnist_conv_ep.yaml", {}, "ep_symmetric", 2.5},
        {"784-512-512-10, dual propagation", "configs/fmnist_mlp_ep_deep.yaml", {}, "dual_prop", 1.1}};
    rep.line("Each config as shipped (its solver, sweeps and order), " + std::to_string(batches) +
             " training steps per repetition, the rule and backprop interleaved, median of " + std::to_string(reps) +
             ".");
    rep.line();
    rep.line("| network | config | rule | per step | backprop | × backprop | target | verdict |");
    rep.line("|---|---|---|---|---|---|---|---|");
    for (const auto& c : depth_cases) {
      try {
        const auto overrides = with_extra(c.overrides);
        const auto times = timing::time_variants(c.config, overrides, {"backprop", c.rule}, batches, reps);
        const double bp = median(times[0]), m = median(times[1]), ratio = m / bp;
        const bool ok = ratio <= c.target;
        if (on_gpu) {
          ++judged;
          misses += !ok;
        }
        rep.line("| " + c.label + " | `" + c.config + "` | " + c.rule + " | " + fmt_time(m) + " | " + fmt_time(bp) +
                 " | " + num("%.2f", ratio) + " | " + num("≤ %.1f", c.target) + " | " + verdict(on_gpu, ok) + " |");
      } catch (const std::exception& e) {
        rep.line("| " + c.label + " | `" + c.config + "` | " + c.rule + " | error: " + message_of(e) + " | | | | |");
        status = 1;
      }
    }
    rep.line();
  }

  // ---- 3. large network
  if (opt.sections.count("large")) {
    progress("large");
    const std::string H = std::to_string(large_hidden), B = std::to_string(large_batch);
    rep.line("## Large network: EP's share of the measured matrix-product throughput (784-" + H + "-" + H +
             "-10, batch " + B + ")");
    rep.line();
    try {
      double t_mm = 0;
      {
        torch::NoGradGuard ng;
        const Tensor a = torch::randn({large_batch, large_hidden}).to(dev);
        const Tensor w = torch::randn({large_hidden, large_hidden}).to(dev);
        Tensor c = torch::empty({large_batch, large_hidden}, a.options());
        t_mm = clock.single([&] { at::mm_out(c, a, w); });
      }
      const double mm_flops = 2.0 * double(large_batch) * double(large_hidden) * double(large_hidden);
      const double peak = mm_flops / t_mm;
      const auto overrides = with_extra({"model.hidden=[" + H + "," + H + "]", "train.batch_size=" + B});
      ExperimentConfig base = load_config(opt.config, overrides);
      const int64_t T = base.get<int64_t>("solver.free_steps"), Kn = base.get<int64_t>("solver.nudged_steps");
      if (base.train.loss != "mse") throw std::runtime_error("the FLOP count assumes train.loss: mse (the output a state)");
      const auto times = timing::time_variants(opt.config, overrides,
                                               {"backprop", "ep", "ep+solver.kernel=compact+solver.tol=1e-4",
                                                "ep+solver.kernel=generic+solver.tol=1e-4"},
                                               large_batches, std::min<int64_t>(reps, 3));
      const std::vector<int64_t> widths{784, large_hidden, large_hidden, 10};
      rep.line("Throughput: `torch::mm` of [" + B + ", " + H + "] × [" + H + ", " + H + "] float32 (LibTorch's " +
               "default precision), " + fmt_time(t_mm) + " per product = **" + fmt_rate(peak) + "**. Steps as in the previous section (`" + opt.config + "`, T = " + std::to_string(T) +
               ", K = " + std::to_string(Kn) + ", solver.kernel=auto), " + std::to_string(large_batches) +
               " steps per repetition, median of " + std::to_string(std::min<int64_t>(reps, 3)) +
               ". FLOPs: the step's matrix products only (2 per multiply-add), counted from the dynamics: EP "
               "4·B·n₀n₁ + (4(T+K) + 4)·B·Σ_{l≥1} n_l n_{l+1}, backprop 4·B·n₀n₁ + 6·B·Σ_{l≥1} n_l n_{l+1}.");
      rep.line();
      rep.line("| rule | per step | GFLOP per step | sustained | share of mm throughput |");
      rep.line("|---|---|---|---|---|");
      // The last two: the compact relaxation (per-example stop, products over the examples still relaxing) against
      // the whole-batch path at the same tolerance; their FLOPs are the upper bound of T + K sweeps.
      const std::vector<std::pair<std::string, double>> rows_{
          {"backprop", backprop_step_flops(widths, large_batch)},
          {"ep", ep_step_flops(widths, large_batch, T, Kn)},
          {"ep, solver.kernel=compact, tol 1e-4", ep_step_flops(widths, large_batch, T, Kn)},
          {"ep, solver.kernel=generic, tol 1e-4", ep_step_flops(widths, large_batch, T, Kn)}};
      for (size_t v = 0; v < rows_.size(); ++v) {
        const double m = median(times[v]), rate = rows_[v].second / m;
        rep.line("| " + rows_[v].first + " | " + fmt_time(m) + " | " + num("%.4g", rows_[v].second / 1e9) + " | " +
                 fmt_rate(rate) + " | " + num("%.1f%%", 100.0 * rate / peak) + " |");
      }
      rep.line();
    } catch (const std::exception& e) {
      rep.line(std::string("**Error in the large-network section:** ") + message_of(e));
      rep.line();
      status = 1;
    }
  }

  // ---- summary
  std::string summary = "**Summary:** ";
  summary += on_gpu ? std::to_string(judged - misses) + " of " + std::to_string(judged) + " targets met"
                    : std::string("CPU run, no verdicts");
  if (status) summary += "; **errors above** (a fused result that disagrees with its unfused sequence, or a failed section)";
  else if (opt.sections.count("kernels")) summary += "; every fused result agrees with its unfused sequence";
  summary += ".";
  rep.line(summary);

  if (!opt.out.empty()) {
    try {
      const std::filesystem::path p(opt.out);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      std::ofstream f(p);
      f << rep.text.str();
      if (!f) throw std::runtime_error("cannot write " + opt.out);
      progress("report written to " + opt.out);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_gpu: %s\n", e.what());
      status = 1;
    }
  }
  if (status) return status;
  return opt.strict && misses > 0 ? 3 : 0;
}
