// The STE solver's passes and the fused optimizer passes as kernel entries (bilevel/kernels/ste_ops.h,
// optim_ops.h): on the CPU against references written with LibTorch's operators from the solver's equations, the
// argument checks (a tensor on another device fails naming it, so host pointers never reach a kernel), the
// solver's update and fused step going through them; on CUDA (skipped without a GPU) the kernels against the CPU
// twins bit for bit, and the solver stepping CUDA tensors.
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <string>
#include <vector>

#include "bilevel/kernels/optim_ops.h"
#include "bilevel/kernels/quant_ops.h"
#include "bilevel/kernels/ste_ops.h"
#include "kernel_test_util.h"

using namespace bilevel;
using kernels::CodeKind;
using kernels::CodeSpec;
using torch::Tensor;

namespace {

struct Case {
  CodeSpec spec;
  int64_t rows, inner;
  bool per_channel, with_zero;
  double lo, hi;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (CodeKind k : {CodeKind::Binary, CodeKind::Ternary, CodeKind::Uniform})
    for (bool pc : {false, true})
      for (bool z : {false, true}) {
        if (z && k != CodeKind::Uniform) continue;  // zero points: asymmetric uniform grids only
        const CodeSpec spec = k == CodeKind::Uniform ? CodeSpec{k, 0.f, 7.f} : CodeSpec{k, -1.f, 1.f};
        const double lo = k == CodeKind::Uniform ? 0.0 : -1.0, hi = k == CodeKind::Uniform ? 7.0 : 1.0;
        out.push_back({spec, 37, 29, pc, z, lo, hi});
        out.push_back({spec, 3, 70001 / 3, pc, z, lo, hi});  // rows larger than a CPU task
      }
  return out;
}

struct Grid {
  Tensor scale, zero;
};
Grid grid_of(const Case& c, torch::Device dev) {
  torch::manual_seed(++kernel_test::g_seed);
  const int64_t channels = c.per_channel ? c.rows : 1;
  Grid g;
  g.scale = (torch::rand({channels}) * 0.5 + 0.05).to(dev);
  if (c.with_zero) g.zero = torch::randint(1, 6, {channels}).to(torch::kFloat32).to(dev);
  return g;
}

Tensor bcast(const Tensor& per_channel, int64_t rows) {
  return per_channel.numel() == 1 ? per_channel.reshape({}) : per_channel.reshape({rows, 1});
}

// The STE post-step with LibTorch's operators: θ clipped to [(lo − z)s, (hi − z)s], w = s·(code(θ·(1/s) + z) − z)
// with the codes of the (separately tested) quant_codes entry.
std::pair<Tensor, Tensor> reference_update(const Tensor& theta, const Grid& g, const Case& c) {
  const Tensor s = bcast(g.scale, c.rows), z = g.zero.defined() ? bcast(g.zero, c.rows) : torch::zeros({});
  const Tensor t = torch::min(torch::max(theta, (float(c.lo) - z) * s), (float(c.hi) - z) * s);
  const Tensor codes = kernels::quant_codes(t, g.scale, g.zero, c.spec);
  return {t, s * (codes - z)};
}

}  // namespace

TEST(SteKernelsCpu, UpdateMatchesTheClipAndTheGridsCodes) {
  for (const Case& c : cases()) {
    const Grid g = grid_of(c, torch::kCPU);
    Tensor theta = torch::randn({c.rows, c.inner}) * 2.0, w = torch::full_like(theta, NAN);
    const auto [t_ref, w_ref] = reference_update(theta, g, c);
    kernels::ste_update_(theta, w, g.scale, g.zero, c.lo, c.hi, c.spec);
    const std::string what = "kind " + std::to_string(int(c.spec.kind)) + " rows " + std::to_string(c.rows) +
                             (c.per_channel ? " per channel" : " per tensor") + (c.with_zero ? " zero" : "");
    EXPECT_TRUE(torch::equal(theta, t_ref)) << what;
    EXPECT_TRUE(torch::equal(w, w_ref)) << what;
  }
}

TEST(SteKernelsCpu, BackwardMasksSumsTheScaleGradientAndClearsG) {
  for (const Case& c : cases()) {
    const Grid g = grid_of(c, torch::kCPU);
    const Tensor theta = torch::randn({c.rows, c.inner}) * 2.0, w = torch::randn({c.rows, c.inner});
    const Tensor g0 = torch::randn({c.rows, c.inner});
    Tensor gb = g0.clone(), out = torch::full_like(theta, NAN);
    const Tensor sg = kernels::ste_backward(gb, theta, w, g.scale, g.zero, c.lo, c.hi, true, true, out);
    const Tensor z = g.zero.defined() ? bcast(g.zero, c.rows) : torch::zeros({});
    const Tensor u = theta * (1.f / bcast(g.scale, c.rows)) + z;
    EXPECT_TRUE(torch::equal(out, g0 * (u.ge(c.lo) & u.le(c.hi)).to(torch::kFloat32)));
    const Tensor dots = (g0.to(torch::kFloat64) * w.to(torch::kFloat64)).sum(1) / bcast(g.scale, c.rows).reshape({-1}).to(torch::kFloat64);
    const Tensor sg_ref = c.per_channel ? dots : dots.sum().reshape({1});
    EXPECT_TRUE(torch::allclose(sg.to(torch::kFloat64), sg_ref, 1e-4, 1e-3));
    EXPECT_EQ(gb.abs().max().item<float>(), 0.f);
    Tensor keep = g0.clone();  // no scale gradient, g kept
    EXPECT_FALSE(kernels::ste_backward(keep, theta, w, g.scale, g.zero, c.lo, c.hi, false, false, out).defined());
    EXPECT_TRUE(torch::equal(keep, g0));
  }
}

TEST(SteKernelsCpu, FusedAdamStepEqualsBackwardAdamAndUpdateInTurn) {
  const auto a = kernels::AdamElement::at(1e-2, 0.9, 0.999, 1e-8, 1e-3, 3);
  for (const Case& c : cases()) {
    const Grid g = grid_of(c, torch::kCPU);
    const Tensor scale_before = g.scale * 1.01;
    Tensor theta = torch::randn({c.rows, c.inner}), w = torch::zeros_like(theta), gw = torch::randn_like(theta);
    Tensor m = torch::randn_like(theta) * 0.1, v = torch::rand_like(theta) * 0.1;
    // In turn: the mask with the scale before the step, Adam, the post-step with the stepped scale.
    Tensor t2 = theta.clone(), w2 = w.clone(), g2 = gw.clone(), m2 = m.clone(), v2 = v.clone(), grad = torch::empty_like(theta);
    kernels::ste_grad_out(g2, t2, scale_before, g.zero, c.lo, c.hi, grad);
    kernels::adam_step_(t2, m2, v2, grad, a);
    kernels::ste_update_(t2, w2, g.scale, g.zero, c.lo, c.hi, c.spec);
    kernels::ste_adam_step_(theta, w, gw, m, v, scale_before, g.scale, g.zero, c.lo, c.hi, c.spec, a);
    EXPECT_TRUE(torch::equal(theta, t2));
    EXPECT_TRUE(torch::equal(w, w2));
    EXPECT_TRUE(torch::equal(m, m2));
    EXPECT_TRUE(torch::equal(v, v2));
    EXPECT_EQ(gw.abs().max().item<float>(), 0.f);
  }
}

TEST(SteKernelsCpu, AdamStepIsAdamsFormula) {
  const auto a = kernels::AdamElement::at(1e-3, 0.9, 0.999, 1e-8, 0.0, 1);
  Tensor p = torch::randn({1000}), m = torch::zeros({1000}), v = torch::zeros({1000});
  const Tensor g = torch::randn({1000}), p0 = p.clone();
  kernels::adam_step_(p, m, v, g, a);
  // Step 1 from zero moments: m̂ = g, v̂ = g², so θ moves by lr·g/(|g| + ε).
  EXPECT_TRUE(torch::allclose(p, p0 - 1e-3 * g / (g.abs() + 1e-8), 1e-5, 1e-6));
}

TEST(SteKernelsCpu, ATensorOnAnotherDeviceIsNamed) {
  const CodeSpec spec{CodeKind::Binary, -1.f, 1.f};
  Tensor theta = torch::randn({4, 3}), scale = torch::ones({1});
  Tensor w_meta = torch::empty({4, 3}, torch::Device(torch::kMeta));
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string e1 = message([&] { kernels::ste_update_(theta, w_meta, scale, Tensor(), -1, 1, spec); });
  EXPECT_NE(e1.find("ste_update_: argument 'w' is on meta but 'theta' is on cpu"), std::string::npos) << e1;
  Tensor scale_meta = torch::ones({1}, torch::Device(torch::kMeta)), w = torch::zeros_like(theta);
  const std::string e2 = message([&] { kernels::ste_update_(theta, w, scale_meta, Tensor(), -1, 1, spec); });
  EXPECT_NE(e2.find("ste_update_"), std::string::npos) << e2;
  EXPECT_NE(e2.find("meta"), std::string::npos) << e2;
  Tensor m = torch::zeros_like(theta), v = torch::zeros_like(theta), g = torch::zeros_like(theta);
  const std::string e3 = message([&] {
    kernels::ste_adam_step_(theta, w, g, m, v, torch::ones({4}), torch::ones({4}), torch::zeros({3}), -1, 1, spec,
                            kernels::AdamElement{});
  });
  EXPECT_NE(e3.find("ste_adam_step_: argument 'zero' has 3 elements but 'scale' has 4"), std::string::npos) << e3;
  const std::string e4 = message([&] { kernels::adam_step_(theta, m, v, w_meta, kernels::AdamElement{}); });
  EXPECT_NE(e4.find("adam_step_: argument 'g' is on meta"), std::string::npos) << e4;
}

// ---------------------------------------------------------------- CUDA (skipped without a GPU)

TEST(SteKernelsCuda, BitForBitTheCpuTwins) {
  REQUIRE_CUDA();
  const torch::Device cuda(torch::kCUDA);
  const auto a = kernels::AdamElement::at(1e-2, 0.9, 0.999, 1e-8, 1e-3, 3);
  for (const Case& c : cases()) {
    const Grid g = grid_of(c, torch::kCPU);
    const Grid gd{g.scale.to(cuda), g.zero.defined() ? g.zero.to(cuda) : Tensor()};
    Tensor theta = torch::randn({c.rows, c.inner}) * 2.0, w = torch::zeros_like(theta);
    Tensor td = theta.to(cuda), wd = w.to(cuda);
    kernels::ste_update_(theta, w, g.scale, g.zero, c.lo, c.hi, c.spec);
    kernels::ste_update_(td, wd, gd.scale, gd.zero, c.lo, c.hi, c.spec);
    EXPECT_TRUE(torch::equal(td.cpu(), theta));
    EXPECT_TRUE(torch::equal(wd.cpu(), w));
    Tensor gw = torch::randn_like(theta), m = torch::randn_like(theta) * 0.1, v = torch::rand_like(theta) * 0.1;
    Tensor gwd = gw.to(cuda), md = m.to(cuda), vd = v.to(cuda);
    kernels::ste_adam_step_(theta, w, gw, m, v, g.scale * 1.01, g.scale, g.zero, c.lo, c.hi, c.spec, a);
    kernels::ste_adam_step_(td, wd, gwd, md, vd, gd.scale * 1.01, gd.scale, gd.zero, c.lo, c.hi, c.spec, a);
    EXPECT_TRUE(torch::equal(td.cpu(), theta));
    EXPECT_TRUE(torch::equal(wd.cpu(), w));
    EXPECT_TRUE(torch::equal(md.cpu(), m));
    EXPECT_TRUE(torch::equal(vd.cpu(), v));
    EXPECT_EQ(gwd.abs().max().item<float>(), 0.f);
    Tensor gb = torch::randn_like(theta), gbd = gb.to(cuda), out = torch::empty_like(theta), outd = out.to(cuda);
    const Tensor sg = kernels::ste_backward(gb, theta, w, g.scale, g.zero, c.lo, c.hi, true, true, out);
    const Tensor sgd = kernels::ste_backward(gbd, td, wd, gd.scale, gd.zero, c.lo, c.hi, true, true, outd);
    EXPECT_TRUE(torch::equal(outd.cpu(), out));
    EXPECT_TRUE(torch::allclose(sgd.cpu(), sg, 1e-4, 1e-4));
    EXPECT_EQ(gbd.abs().max().item<float>(), 0.f);
  }
  Tensor p = torch::randn({70001}), m = torch::zeros_like(p), v = torch::zeros_like(p), g = torch::randn_like(p);
  Tensor pd = p.to(cuda), md = m.to(cuda), vd = v.to(cuda), gd = g.to(cuda);
  kernels::adam_step_(p, m, v, g, a);
  kernels::adam_step_(pd, md, vd, gd, a);
  EXPECT_TRUE(torch::equal(pd.cpu(), p));
}
