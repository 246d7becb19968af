// The fused element-wise kernels (bilevel/kernels/fused_ops.h) and their CPU twins:
// - dual propagation's dyad update and the fixed-point epilogue (new state + residual) against the unfused
//   LibTorch sequences they replace (independent code: Activation::f / Neuron::finish_ and at::add/sub/max), for
//   every activation, float32 and float64, several α, fresh random inputs per case, at sizes that are not
//   multiples of the CUDA block (256) or of a CPU task (2^15), outputs poisoned with NaN and followed by guard
//   cells that must stay untouched;
// - NaN propagation, empty tensors, thread-count independence, and every argument check's message;
// - on a CUDA device (skipped cleanly without one, or in a build without the CUDA kernels): the same comparisons
//   on the GPU, against the CPU twin and against LibTorch's own CUDA operators, on a non-default stream.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "bilevel/energy/neuron.h"
#include "bilevel/kernels/config.h"
#include "bilevel/kernels/fused_ops.h"
#include "bilevel/nn/activation.h"
#include "kernel_test_util.h"

#if BILEVEL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

using namespace bilevel;
using torch::Tensor;
using namespace kernel_test;
namespace K = bilevel::kernels;

namespace {

const std::vector<double> kAlphas = {0.0, 0.25, 0.5, 1.0};

// The unfused sequence dual_prop.cpp runs for 0 < α < 1 (and, with α ∈ {0, 1}, the same formula).
std::pair<Tensor, Tensor> dyad_reference(const Tensor& u, const Tensor& f, double alpha, const Activation& rho) {
  Tensor sp = rho.f(at::add(u, f, 1.0 - alpha));
  Tensor sm = rho.f(at::sub(u, f, alpha));
  Tensor d = sp - sm;
  return {d, at::add(sm, d, alpha)};
}

// Element-wise |a − b| <= atol + rtol |b|, NaN where b is NaN.
void expect_close(const Tensor& a, const Tensor& b, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const Tensor ac = a.to(torch::kCPU, torch::kFloat64), bc = b.to(torch::kCPU, torch::kFloat64);
  EXPECT_TRUE(ac.isnan().eq(bc.isnan()).all().item<bool>()) << what << ": NaNs differ";
  const Tensor ok = (ac - bc).abs().le(atol + rtol * bc.abs()) | (ac.isnan() & bc.isnan());
  if (!ok.all().item<bool>()) {
    const int64_t i = (~ok).nonzero()[0][0].item<int64_t>();
    ADD_FAILURE() << what << ": first mismatch at " << i << ": " << ac[i].item<double>() << " vs reference "
                  << bc[i].item<double>() << " (max |diff| " << (ac - bc).abs().nan_to_num(0).max().item<double>()
                  << ")";
  }
}

// A few ulps of the values involved (|u|, |f| up to ~10): the reference's ρ (Sleef, vectorised) and the kernel's
// (libm / CUDA's) differ by ulps, and δ = s⁺ − s⁻ keeps the absolute rounding error of its operands.
double atol_for(torch::ScalarType t) { return t == torch::kFloat ? 1e-5 : 1e-13; }
double rtol_for(torch::ScalarType t) { return t == torch::kFloat ? 1e-5 : 1e-13; }

void check_dyad_against_reference(torch::Device dev) {
  for (const std::string& name : activation_names()) {
    const Activation& rho = activation(name);
    for (auto dtype : {torch::kFloat, torch::kDouble})
      for (double alpha : kAlphas)
        for (int64_t n : kSizes) {
          const std::string what = name + " " + c10::toString(dtype) + " α=" + std::to_string(alpha) +
                                   " n=" + std::to_string(n) + " on " + dev.str();
          const Tensor u = random_input(n, dtype, 2.0, dev), f = random_input(n, dtype, 1.5, dev);
          Poisoned delta(n, dtype, dev), sbar(n, dtype, dev);
          K::dyad_update_out(u, f, alpha, K::act_of(name), delta.view, sbar.view);
          auto [ref_d, ref_s] = dyad_reference(u, f, alpha, rho);
          expect_close(delta.view, ref_d, atol_for(dtype), rtol_for(dtype), what + ": delta");
          expect_close(sbar.view, ref_s, atol_for(dtype), rtol_for(dtype), what + ": sbar");
          EXPECT_TRUE(delta.guards_intact() && sbar.guards_intact()) << what << ": wrote past the end";
        }
  }
}

const std::vector<std::string> kNeurons = {"identity", "relu", "hard_sigmoid", "hard_tanh",
                                           "sigmoid",  "sigmoid4", "tanh",       "softplus"};

// v already holds a·u + c for the neuron; the reference is Neuron::finish_ followed by max |·| of the change.
void check_state_against_reference(torch::Device dev) {
  for (const std::string& name : kNeurons) {
    const Neuron neuron = Neuron::from_activation(activation(name));
    for (auto dtype : {torch::kFloat, torch::kDouble})
      for (int64_t n : kSizes) {
        const std::string what = name + " " + c10::toString(dtype) + " n=" + std::to_string(n) + " on " + dev.str();
        const Tensor v0 = random_input(n, dtype, 3.0, dev), s_old = random_input(n, dtype, 1.0, dev);
        Poisoned v(n, dtype, dev);
        v.view.copy_(v0);
        const double r = K::state_update_(v.view, s_old, neuron.act_params());
        Tensor ref = v0.clone();
        neuron.finish_(ref);
        const double ref_r = (ref - s_old).abs().max().item<double>();
        expect_close(v.view, ref, atol_for(dtype), rtol_for(dtype), what + ": state");
        EXPECT_NEAR(r, ref_r, atol_for(dtype) + rtol_for(dtype) * ref_r) << what << ": residual";
        // The residual is exactly that of the states the kernel wrote.
        EXPECT_EQ(r, (v.view - s_old).abs().max().item<double>()) << what;
        EXPECT_TRUE(v.guards_intact()) << what << ": wrote past the end";
      }
  }
}

}  // namespace

TEST(FusedKernelsCpu, DyadMatchesTheUnfusedSequence) { check_dyad_against_reference(torch::kCPU); }

TEST(FusedKernelsCpu, StateUpdateMatchesFinishAndMaxAbsDiff) { check_state_against_reference(torch::kCPU); }

TEST(FusedKernelsCpu, ClipTypeResultsAreExact) {
  // Without a transcendental function the twin's arithmetic is the reference's, operation for operation, except
  // for fused multiply-adds the reference may use: compare at α ∈ {0, 1} (no product) and identity/relu bit for bit.
  for (const char* name : {"identity", "relu", "hard_sigmoid", "hard_tanh"})
    for (double alpha : {0.0, 1.0}) {
      const Tensor u = random_input(1001, torch::kDouble, 2.0), f = random_input(1001, torch::kDouble, 2.0);
      auto out = K::dyad_update(u, f, alpha, K::act_of(name));
      auto [d, s] = dyad_reference(u, f, alpha, activation(name));
      EXPECT_TRUE(out.delta.equal(d)) << name << " α=" << alpha;
      EXPECT_TRUE(out.sbar.equal(s)) << name << " α=" << alpha;
    }
}

TEST(FusedKernelsCpu, ClipWithAnOpenUpperBound) {
  K::ActParams relu_box{K::Act::Clip, 0.0, std::numeric_limits<double>::infinity()};
  Tensor v = torch::tensor({-2.0, -0.0, 0.5, 1e300, 3.0}, torch::kDouble);
  const Tensor s_old = torch::tensor({0.0, 0.0, 0.0, 0.0, 4.0}, torch::kDouble);
  const double r = K::state_update_(v, s_old, relu_box);
  EXPECT_TRUE(v.equal(torch::tensor({0.0, 0.0, 0.5, 1e300, 3.0}, torch::kDouble)));
  EXPECT_EQ(r, 1e300);
}

TEST(FusedKernelsCpu, NaNPropagatesLikeLibTorch) {
  for (int64_t where : {0L, 40000L, 70000L}) {  // in the first, a middle and the last CPU task
    Tensor v = random_input(70001, torch::kFloat, 1.0), s_old = random_input(70001, torch::kFloat, 1.0);
    v[where] = std::numeric_limits<float>::quiet_NaN();
    Tensor ref = v.clone();
    ref.clamp_(-1.0, 1.0);
    EXPECT_TRUE(std::isnan((ref - s_old).abs().max().item<double>()));
    const double r = K::state_update_(v, s_old, K::act_of("hard_tanh"));
    EXPECT_TRUE(std::isnan(r)) << "NaN state at " << where;
    EXPECT_TRUE(std::isnan(v[where].item<float>()));
    // A NaN in the old state: the change is NaN too.
    Tensor v2 = random_input(70001, torch::kDouble, 1.0), s2 = random_input(70001, torch::kDouble, 1.0);
    s2[where] = std::numeric_limits<double>::quiet_NaN();
    EXPECT_TRUE(std::isnan(K::state_update_(v2, s2, K::act_of("sigmoid")))) << "NaN old state at " << where;
  }
  Tensor u = torch::tensor({1.0, std::nan(""), 0.5}), f = torch::tensor({0.1, 0.2, std::nan("")});
  auto out = K::dyad_update(u, f, 0.5, K::act_of("relu"));
  auto [d, s] = dyad_reference(u, f, 0.5, activation("relu"));
  expect_close(out.delta, d, 1e-15, 0, "delta with NaN inputs");
  expect_close(out.sbar, s, 1e-15, 0, "sbar with NaN inputs");
}

TEST(FusedKernelsCpu, EmptyTensorsAndShapes) {
  Tensor e = torch::empty({0, 5});
  EXPECT_EQ(K::state_update_(e, torch::empty({0, 5}), K::act_of("relu")), 0.0);
  auto out = K::dyad_update(e, torch::empty({0, 5}), 0.5, K::act_of("tanh"));
  EXPECT_EQ(out.delta.sizes(), e.sizes());
  // Any shape: a [B, C, H, W] batch gives the same values as its flattening.
  const Tensor u = random_input(3 * 4 * 5 * 7, torch::kFloat, 2.0), f = random_input(3 * 4 * 5 * 7, torch::kFloat, 1.0);
  auto flat = K::dyad_update(u, f, 0.3, K::act_of("sigmoid4"));
  auto shaped = K::dyad_update(u.view({3, 4, 5, 7}), f.view({3, 4, 5, 7}), 0.3, K::act_of("sigmoid4"));
  EXPECT_TRUE(shaped.delta.flatten().equal(flat.delta));
  EXPECT_TRUE(shaped.sbar.flatten().equal(flat.sbar));
}

TEST(FusedKernelsCpu, ResultsDoNotDependOnTheThreadCount) {
  const int threads = at::get_num_threads();
  const Tensor u = random_input(200003, torch::kFloat, 2.0), f = random_input(200003, torch::kFloat, 1.0);
  const Tensor v0 = random_input(200003, torch::kFloat, 2.0), s_old = random_input(200003, torch::kFloat, 1.0);
  std::vector<K::DyadTensors> dy;
  std::vector<Tensor> vs;
  std::vector<double> rs;
  for (int t : {1, 2, 3}) {
    at::set_num_threads(t);
    dy.push_back(K::dyad_update(u, f, 0.5, K::act_of("tanh")));
    vs.push_back(v0.clone());
    rs.push_back(K::state_update_(vs.back(), s_old, K::act_of("sigmoid")));
  }
  at::set_num_threads(threads);
  for (size_t i = 1; i < dy.size(); ++i) {
    EXPECT_TRUE(dy[i].delta.equal(dy[0].delta) && dy[i].sbar.equal(dy[0].sbar));
    EXPECT_TRUE(vs[i].equal(vs[0]));
    EXPECT_EQ(rs[i], rs[0]);
  }
}

TEST(FusedKernelsCpu, ArgumentChecksNameTheArgument) {
  const Tensor u = torch::zeros({4, 3}), f = torch::zeros({4, 3});
  Tensor d = torch::empty({4, 3});
  auto expect_error = [](auto&& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { K::dyad_update(u, torch::zeros({4, 4}), 0.5, K::act_of("relu")); },
               "argument 'f' is Float on cpu, shape [4, 4] but 'u' is Float on cpu, shape [4, 3]");
  expect_error([&] { K::dyad_update(u, torch::zeros({4, 3}, torch::kDouble), 0.5, K::act_of("relu")); },
               "argument 'f' has dtype Double but 'u' has Float");
  expect_error([&] { K::dyad_update(torch::zeros({4, 3}, torch::kInt), f, 0.5, K::act_of("relu")); },
               "argument 'u' has dtype Int; the kernels take float32 or float64");
  expect_error([&] { K::dyad_update(u, torch::zeros({3, 4}).t(), 0.5, K::act_of("relu")); },
               "argument 'f' (Float on cpu, shape [4, 3]) is not contiguous");
  expect_error([&] { K::dyad_update(u, Tensor(), 0.5, K::act_of("relu")); }, "argument 'f' is an undefined tensor");
  expect_error([&] { K::dyad_update(u, f, 1.5, K::act_of("relu")); }, "alpha = 1.5");
  Tensor wrong = torch::empty({12});
  expect_error([&] { K::dyad_update_out(u, f, 0.5, K::act_of("relu"), d, wrong); },
               "argument 'sbar' is Float on cpu, shape [12]");
  expect_error([&] { K::act_of("gelu"); }, "no fused kernel for activation 'gelu'");
  expect_error([&] { K::dyad_update(u, f, 0.5, K::ActParams{K::Act::Clip, 1.0, 0.0}); }, "clip box");
  Tensor v = torch::zeros({5});
  expect_error([&] { K::state_update_(v, torch::zeros({6}), K::act_of("relu")); }, "argument 's_old'");
}

// ---- CUDA (skipped without a device or without the kernels)

TEST(FusedKernelsCuda, DyadMatchesTheUnfusedSequence) {
  REQUIRE_CUDA();
  check_dyad_against_reference(torch::kCUDA);
}

TEST(FusedKernelsCuda, StateUpdateMatchesFinishAndMaxAbsDiff) {
  REQUIRE_CUDA();
  check_state_against_reference(torch::kCUDA);
}

TEST(FusedKernelsCuda, AgreesWithTheCpuTwinOnLargeInputs) {
  REQUIRE_CUDA();
  // More elements than one grid of 65535 blocks × 256 covers: the grid-stride loop takes the rest.
  const int64_t n = 65535LL * 256 + 1001;
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    const Tensor u = random_input(n, dtype, 2.0), f = random_input(n, dtype, 1.0);
    auto cpu = K::dyad_update(u, f, 0.5, K::act_of("sigmoid4"));
    Poisoned d(n, dtype, torch::kCUDA), s(n, dtype, torch::kCUDA);
    K::dyad_update_out(u.cuda(), f.cuda(), 0.5, K::act_of("sigmoid4"), d.view, s.view);
    expect_close(d.view, cpu.delta, atol_for(dtype), rtol_for(dtype), "delta, GPU vs CPU twin");
    expect_close(s.view, cpu.sbar, atol_for(dtype), rtol_for(dtype), "sbar, GPU vs CPU twin");
    EXPECT_TRUE(d.guards_intact() && s.guards_intact());

    const Tensor v0 = random_input(n, dtype, 3.0), s_old = random_input(n, dtype, 1.0);
    Tensor v_cpu = v0.clone(), v_gpu = v0.cuda();
    // The largest change sits in the last element, beyond the first grid's reach.
    v_cpu[n - 1] = 1e6, v_gpu[n - 1] = 1e6;
    const double r_cpu = K::state_update_(v_cpu, s_old, K::act_of("relu"));
    const double r_gpu = K::state_update_(v_gpu, s_old.cuda(), K::act_of("relu"));
    EXPECT_EQ(r_gpu, r_cpu);
    EXPECT_TRUE(v_gpu.cpu().equal(v_cpu));
  }
}

TEST(FusedKernelsCuda, RunsOnTheCurrentStreamAndDevice) {
  REQUIRE_CUDA();
#if BILEVEL_WITH_CUDA
  const int devices = int(torch::cuda::device_count());
  for (int dev = 0; dev < devices && dev < 2; ++dev) {
    const torch::Device device(torch::kCUDA, dev);
    c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, dev);
    c10::cuda::CUDAStreamGuard guard(stream);  // also makes `dev` current
    const Tensor u = random_input(4097, torch::kFloat, 2.0, device), f = random_input(4097, torch::kFloat, 1.0, device);
    auto out = K::dyad_update(u, f, 0.25, K::act_of("tanh"));
    stream.synchronize();
    auto [rd, rs] = dyad_reference(u, f, 0.25, activation("tanh"));
    expect_close(out.delta, rd, atol_for(torch::kFloat), rtol_for(torch::kFloat), "delta on " + device.str());
    expect_close(out.sbar, rs, atol_for(torch::kFloat), rtol_for(torch::kFloat), "sbar on " + device.str());
  }
  // Tensors on device 1 while device 0 is current (device guard), when there are two devices.
  if (devices >= 2) {
    const c10::cuda::CUDAGuard current(0);
    const torch::Device d1(torch::kCUDA, 1);
    Tensor v = random_input(999, torch::kDouble, 2.0, d1), s_old = random_input(999, torch::kDouble, 1.0, d1);
    Tensor ref = v.clone().tanh_();
    const double r = K::state_update_(v, s_old, K::act_of("tanh"));
    expect_close(v, ref, 1e-13, 1e-13, "state on cuda:1");
    EXPECT_NEAR(r, (ref - s_old).abs().max().item<double>(), 1e-13);
  }
  // Mixed devices are rejected with a clear message.
  try {
    K::dyad_update(torch::zeros({3}, torch::kCUDA), torch::zeros({3}), 0.5, K::act_of("relu"));
    ADD_FAILURE() << "mixed devices accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("argument 'f' is on cpu but 'u' is on cuda:0"), std::string::npos) << e.what();
  }
#endif
}
