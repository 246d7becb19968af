// The quantization kernels (bilevel/kernels/quant_ops.h) and their CPU twins:
// - the built-in grids' codes (binary, ternary, symmetric and asymmetric uniform; per tensor and per channel;
//   deterministic and stochastic) against references written with LibTorch's own operators from each
//   quantizer's equations (bilevel/quant/quantizer.h), exactly;
// - the activation quantizer's codes, against the same and against integer inference's state_codes;
// - the solvers' element-wise passes (the STE solver's masked gradient, AdaSTE forward and backward, LSQ,
//   ProxQuant's prox step, the flip rule) against the same;
//   AdaSTE's backward also against the finite difference of its inner problem's minimiser;
// - fresh random inputs per case, sizes that are not multiples of the CUDA block or of a CPU task, outputs
//   poisoned with NaN and followed by guard cells, thread-count independence, and the argument checks;
// - on a CUDA device (skipped cleanly without one, or in a build without the CUDA kernels): the GPU against the
//   CPU twin, bit for bit (quant.cu is compiled without multiply-add contraction).
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <string>
#include <vector>

#include "bilevel/kernels/cpu/int_gemm.h"
#include "bilevel/kernels/quant_ops.h"
#include "bilevel/kernels/counter_rng.h"
#include "kernel_test_util.h"

using namespace bilevel;
using namespace kernel_test;
using torch::Tensor;
namespace K = bilevel::kernels;

namespace {

struct Grid {
  const char* name;
  K::CodeSpec spec;
  bool asymmetric;  // with a zero point
};
const std::vector<Grid> kGrids = {
    {"binary", {K::CodeKind::Binary, -1, 1}, false},
    {"ternary", {K::CodeKind::Ternary, -1, 1}, false},
    {"uniform 4-bit symmetric", {K::CodeKind::Uniform, -8, 7}, false},
    {"uniform 3-bit asymmetric", {K::CodeKind::Uniform, 0, 7}, true},
};

// [channels, n / channels] (one channel: [n]) float32 weights, and per-channel scales and zero points.
struct Case {
  Tensor theta, scale, zero;
};
Case make_case(int64_t n, int64_t channels, bool asymmetric, torch::Device dev = torch::kCPU) {
  Case c;
  c.theta = random_input(n, torch::kFloat, 1.5, dev);
  if (channels > 1) c.theta = c.theta.reshape({channels, n / channels});
  c.scale = (random_input(channels, torch::kFloat, 0.3, dev).abs() + 0.05).contiguous();
  c.zero = asymmetric ? torch::randint(0, 5, {channels}, torch::dtype(torch::kFloat).device(dev)) : Tensor();
  return c;
}

Tensor per_channel(const Tensor& v, const Tensor& like) {
  std::vector<int64_t> shape(size_t(like.dim()), 1);
  if (!shape.empty()) shape[0] = v.numel();
  return v.numel() == 1 ? v.reshape({}) : v.reshape(shape);
}

Tensor round_half_away(const Tensor& x) { return torch::sign(x) * torch::floor(x.abs() + 0.5f); }

// Each grid's code of x (deterministic), from quantizer.h's equations.
Tensor reference_code(const Grid& g, const Tensor& x) {
  switch (g.spec.kind) {
    case K::CodeKind::Binary: return torch::where(x >= 0, torch::ones_like(x), -torch::ones_like(x));
    case K::CodeKind::Ternary:
      return torch::where(x > 0.7f, torch::ones_like(x), torch::where(x < -0.7f, -torch::ones_like(x), torch::zeros_like(x)));
    default: return round_half_away(x.clamp(g.spec.lo, g.spec.hi));
  }
}
// ... and with stochastic rounding from u ∈ [0, 1): floor(c) + [u < c − floor(c)], BinaryConnect's P(+1) for binary.
Tensor reference_code_stochastic(const Grid& g, const Tensor& x, const Tensor& u) {
  auto round_stochastic = [&](const Tensor& c) { return torch::floor(c) + (u < c - torch::floor(c)).to(torch::kFloat); };
  switch (g.spec.kind) {
    case K::CodeKind::Binary:
      return torch::where(u < ((x + 1) * 0.5f).clamp(0, 1), torch::ones_like(x), -torch::ones_like(x));
    case K::CodeKind::Ternary: return round_stochastic(x.clamp(-1, 1));
    default: return round_stochastic(x.clamp(g.spec.lo, g.spec.hi)).clamp(g.spec.lo, g.spec.hi);
  }
}

// The stream's numbers for elements 0..n−1 (counter_rng.h defines the stream; this is its plain loop).
Tensor stream(uint64_t key, int64_t n) {
  Tensor u = torch::empty({n}, torch::kFloat);
  for (int64_t i = 0; i < n; ++i) u.data_ptr<float>()[i] = counter_uniform(key, uint64_t(i));
  return u;
}

void expect_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  const Tensor ac = a.cpu().reshape(-1), bc = b.cpu().reshape(-1);
  ASSERT_EQ(ac.numel(), bc.numel()) << what;
  const Tensor bad = ac.ne(bc);
  if (bad.any().item<bool>()) {
    const int64_t i = bad.nonzero()[0][0].item<int64_t>();
    ADD_FAILURE() << what << ": " << bad.sum().item<int64_t>() << " mismatches; first at " << i << ": "
                  << ac[i].item<float>() << " vs reference " << bc[i].item<float>();
  }
}

void check_codes(torch::Device dev) {
  for (const Grid& g : kGrids)
    for (int64_t n : kSizes)
      for (int64_t channels : {int64_t(1), int64_t(7)}) {
        if (n % channels != 0) continue;
        for (bool stochastic : {false, true}) {
          const std::string what = std::string(g.name) + ", n = " + std::to_string(n) + ", " +
                                   std::to_string(channels) + " channel(s)" + (stochastic ? ", stochastic" : "");
          const Case c = make_case(n, channels, g.asymmetric);
          const uint64_t key = stream_key(17, 2, int64_t(n), uint64_t(channels));
          Poisoned out(n, torch::kFloat, dev);
          Tensor view = out.view.view(c.theta.sizes());
          K::quant_codes_out(c.theta.to(dev), c.scale.to(dev), c.zero.defined() ? c.zero.to(dev) : Tensor(), g.spec,
                             stochastic ? &key : nullptr, view);
          const Tensor z = c.zero.defined() ? per_channel(c.zero, c.theta) : torch::zeros({}, torch::kFloat);
          const Tensor s = per_channel(c.scale, c.theta);
          const Tensor ref =
              stochastic ? reference_code_stochastic(g, c.theta / s + z, stream(key, n).view(c.theta.sizes()))
                         : reference_code(g, c.theta * torch::reciprocal(s) + z);
          expect_equal(view, ref, what);
          EXPECT_TRUE(out.guards_intact()) << what;
        }
      }
}

void check_solvers(torch::Device dev) {
  for (int64_t n : kSizes) {
    const std::string at = ", n = " + std::to_string(n);
    const Tensor g = random_input(n, torch::kFloat, 1.0), u = random_input(n, torch::kFloat, 1.2);
    const Tensor gd = g.to(dev), ud = u.to(dev);
    for (int64_t channels : {int64_t(1), int64_t(7)}) {  // STE: g·1[lo <= θ/s + z <= hi], per tensor / channel
      if (n % channels != 0) continue;
      const Case c = make_case(n, channels, true);
      const Tensor gc = g.reshape(c.theta.sizes());
      Poisoned out(n, torch::kFloat, dev);
      Tensor view = out.view.view(c.theta.sizes());
      K::ste_grad_out(gc.to(dev), c.theta.to(dev), c.scale.to(dev), c.zero.to(dev), -2.0, 5.0, view);
      const Tensor x = c.theta * torch::reciprocal(per_channel(c.scale, c.theta)) + per_channel(c.zero, c.theta);
      expect_equal(view, torch::where((x >= -2.0f) & (x <= 5.0f), gc, torch::zeros_like(gc)),
                   "ste_grad" + at + ", " + std::to_string(channels) + " channel(s)");
      EXPECT_TRUE(out.guards_intact());
    }
    for (const float beta : {0.7f, 6.f}) {  // β·α below and above 1 (α = 0.2)
      const float alpha = 0.2f, ba = beta * alpha;
      auto adaste_ref = [&](const Tensor& v) {
        const Tensor sign = torch::where(v >= 0, torch::ones_like(v), -torch::ones_like(v));
        return ((v + beta * (1.f + alpha) * sign) / (1.f + beta)).clamp(-1, 1);
      };
      // The adaptive slope's case table (quant_element.h) in LibTorch's operators.
      auto slope_ref = [&](const Tensor& gv, const Tensor& v) {
        const Tensor a = v.abs(), inward = (gv * v) > 0, half = torch::full_like(a, 0.5f);
        const Tensor linear = torch::full_like(a, 1.f / (1.f + beta)), zero = torch::zeros_like(a);
        if (ba >= 1.f)
          return torch::where(a == 0, half, torch::where(inward, torch::minimum(half, 1.f / a), zero));
        const Tensor sat = a >= 1.f - ba;
        const Tensor in = torch::where(sat, torch::minimum(half, (1.f + 2.f * beta + ba) / ((1.f + beta) * a)),
                                       torch::minimum(half, (a + 2.f * beta * (1.f + alpha)) / ((1.f + beta) * a)));
        return torch::where(a == 0, linear, torch::where(inward, in, torch::where(sat, zero, linear)));
      };
      const std::string ab = at + ", beta " + std::to_string(beta);
      // AdaSTE: w*(u) = clip((u + β(1+α) sign u)/(1+β), −1, 1)
      Poisoned w(n, torch::kFloat, dev);
      K::adaste_forward_out(ud, beta, alpha, w.view);
      EXPECT_TRUE(torch::allclose(w.view.cpu(), adaste_ref(u), 1e-6, 1e-6)) << "adaste_forward" + ab;
      EXPECT_TRUE(w.guards_intact());
      // Its backward: σ(u, g)·g.
      Poisoned out(n, torch::kFloat, dev);
      K::adaste_grad_out(gd, ud, beta, alpha, out.view);
      EXPECT_TRUE(torch::allclose(out.view.cpu(), slope_ref(g, u) * g, 1e-5, 1e-6)) << "adaste_grad" + ab;
      EXPECT_TRUE(out.guards_intact());
    }
    {  // LSQ on [−Q_N, Q_P] = [−8, 7]: ∂v̂/∂v = 1 inside; ∂v̂/∂s = round(u) − u inside, −Q_N / Q_P outside.
      const Tensor us = u * 6;  // reaches past both ends
      Poisoned gv(n, torch::kFloat, dev), gs(n, torch::kFloat, dev);
      K::lsq_grads_out(gd, us.to(dev), 8, 7, gv.view, gs.view);
      const Tensor inside = (us >= -8) & (us <= 7);
      expect_equal(gv.view, torch::where(inside, g, torch::zeros_like(g)), "lsq gv" + at);
      const Tensor ds = torch::where(us <= -8, torch::full_like(us, -8),
                                     torch::where(us >= 7, torch::full_like(us, 7), round_half_away(us) - us));
      expect_equal(gs.view, g * ds, "lsq gs" + at);
      EXPECT_TRUE(gv.guards_intact() && gs.guards_intact());
    }
    {  // ProxQuant: q ← q + sign(u − q)·max(|u − q| − λ, 0), towards the nearest integer q
      const Tensor uu = u * 3, q = torch::round(uu);
      Tensor qd = q.to(dev).clone();
      K::prox_towards_(qd, uu.to(dev), 0.2);
      const Tensor d = uu - q;
      const Tensor ref = torch::where(d.abs() - 0.2f > 0, q + torch::sign(d) * (d.abs() - 0.2f), q);
      expect_equal(qd, ref, "prox_towards" + at);
    }
    {  // flip: q ← −q where m·q > τ
      const Tensor q = torch::where(u >= 0, torch::ones_like(u), -torch::ones_like(u));
      Tensor qd = q.to(dev).clone();
      K::flip_codes_(qd, gd, 0.3);
      expect_equal(qd, torch::where(g * q > 0.3f, -q, q), "flip" + at);
    }
  }
}

TEST(QuantKernelsCpu, CodesMatchEachGridsEquations) { check_codes(torch::kCPU); }

TEST(QuantKernelsCpu, SolverPassesMatchTheirEquations) { check_solvers(torch::kCPU); }

void check_activation_codes(torch::Device dev) {
  // 3-bit unsigned codes of (x − offset)/step on [0, 7]; deterministic as integer inference (state_codes) computes
  // them, and stochastic.
  for (int64_t n : kSizes) {
    const Tensor x = random_input(n, torch::kFloat, 2.0);
    const float offset = -0.25f, step = 0.3f;
    const uint64_t key = stream_key(3, 1, n, 7);
    const Tensor v = (x - offset) * (1.f / step);
    for (const uint64_t* k : {static_cast<const uint64_t*>(nullptr), &key}) {
      Poisoned out(n, torch::kFloat, dev);
      K::activation_codes_out(x.to(dev), offset, step, 0, 7, k, out.view);
      const Tensor ref = k ? reference_code_stochastic(kGrids[3], v, stream(key, n)) : round_half_away(v.clamp(0, 7));
      expect_equal(out.view, ref, std::string("activation codes") + (k ? ", stochastic" : "") + ", n = " +
                                      std::to_string(n));
      EXPECT_TRUE(out.guards_intact());
    }
    Tensor state = torch::empty({n});
    cpu::state_codes(x.data_ptr<float>(), n, offset, 1.f / step, 0, 7, state.data_ptr<float>());
    expect_equal(state, round_half_away(v.clamp(0, 7)), "state_codes, n = " + std::to_string(n));
  }
}

TEST(QuantKernelsCpu, ActivationCodesMatchIntegerInferenceAndTheirEquation) { check_activation_codes(torch::kCPU); }

TEST(QuantKernelsCpu, SameCodesOnAnyNumberOfThreads) {
  const Case c = make_case(70001, 1, false);
  const uint64_t key = 99;
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const Tensor one = K::quant_codes(c.theta, c.scale, Tensor(), kGrids[2].spec, &key);
  at::set_num_threads(std::max(2, threads));
  const Tensor many = K::quant_codes(c.theta, c.scale, Tensor(), kGrids[2].spec, &key);
  at::set_num_threads(threads);
  EXPECT_TRUE(one.equal(many));
}

TEST(QuantKernelsCpu, ArgumentChecksNameTheProblem) {
  const Tensor theta = torch::randn({6, 5}), scale = torch::ones({6});
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { K::quant_codes(theta.to(torch::kDouble), scale, Tensor(), {}); }).find("'theta' has dtype Double"),
            std::string::npos);
  EXPECT_NE(message([&] { K::quant_codes(theta, torch::ones({4}), Tensor(), {}); }).find("'scale' has 4 elements"),
            std::string::npos);
  EXPECT_NE(message([&] { K::quant_codes(theta.t(), scale, Tensor(), {}); }).find("not contiguous"), std::string::npos);
  EXPECT_NE(message([&] { K::quant_codes(theta, scale, Tensor(), {K::CodeKind::Uniform, 3, 1}); }).find("empty code range"),
            std::string::npos);
  Tensor out = torch::empty({5});
  EXPECT_NE(message([&] { K::ste_grad_out(torch::ones({6}), torch::ones({6}), torch::ones({1}), Tensor(), -1, 1, out); })
                .find("'out' is"),
            std::string::npos);
  Tensor codes = torch::ones({3});
  EXPECT_NE(message([&] { K::flip_codes_(codes, torch::ones({3}, torch::kInt), 0.1); }).find("'m' has dtype Int"),
            std::string::npos);
}

TEST(QuantKernelsCuda, CodesMatchEachGridsEquations) {
  REQUIRE_CUDA();
  check_codes(torch::kCUDA);
}

TEST(QuantKernelsCuda, SolverPassesMatchTheirEquations) {
  REQUIRE_CUDA();
  check_solvers(torch::kCUDA);
}

TEST(QuantKernelsCuda, ActivationCodesMatchIntegerInferenceAndTheirEquation) {
  REQUIRE_CUDA();
  check_activation_codes(torch::kCUDA);
}

TEST(QuantKernelsCuda, BitForBitTheCpuTwinBeyondOneGrid) {
  REQUIRE_CUDA();
  const int64_t n = 65535LL * 256 + 1001;  // more than one grid of 65535 blocks covers
  const Case c = make_case(n, 1, true);
  for (const Grid& g : kGrids) {
    const uint64_t key = 5;
    for (const uint64_t* k : {static_cast<const uint64_t*>(nullptr), &key}) {
      const Tensor cpu = K::quant_codes(c.theta, c.scale, c.zero, g.spec, k);
      const Tensor gpu = K::quant_codes(c.theta.cuda(), c.scale.cuda(), c.zero.cuda(), g.spec, k);
      expect_equal(gpu, cpu, std::string(g.name) + (k ? ", stochastic" : ""));
    }
  }
}

}  // namespace
