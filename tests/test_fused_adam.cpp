// FusedAdam against LibTorch's torch::optim::Adam (the independent reference): same parameters and moments after
// several steps on fresh random gradients, with and without weight decay, at sizes that are not multiples of the
// parallel grain; the operator fallback (float64) equal to the reference; checkpoints interchangeable both ways.
#include <gtest/gtest.h>

#include <torch/serialize.h>

#include <sstream>

#include "bilevel/optim/fused_adam.h"
#include "bilevel/util/threads.h"

using namespace bilevel;
using torch::Tensor;

namespace {

std::vector<Tensor> make_params(torch::Dtype dtype, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<Tensor> ps;
  for (auto shape : std::vector<std::vector<int64_t>>{{257, 131}, {37}, {3, 5, 7, 11}, {40001}})
    ps.push_back(torch::randn(shape, torch::TensorOptions().dtype(dtype)).requires_grad_(true));
  return ps;
}

std::vector<Tensor> clones(const std::vector<Tensor>& ps) {
  std::vector<Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}

torch::optim::AdamOptions options(double wd) { return torch::optim::AdamOptions(3e-3).betas({0.8, 0.99}).eps(1e-6).weight_decay(wd); }

// A parameter's state. The state map's key is a string in LibTorch 1.x and a pointer in 2.x; the parameters here
// all have different sizes, so the moments' size identifies the state.
const torch::optim::AdamParamState& state(torch::optim::Optimizer& o, const Tensor& p) {
  for (auto& kv : o.state()) {
    const auto* s = static_cast<const torch::optim::AdamParamState*>(kv.second.get());
    if (s->exp_avg().sizes() == p.sizes()) return *s;
  }
  throw std::runtime_error("no state");
}

// Steps both optimizers `steps` times with the same fresh gradients.
void run_both(torch::optim::Optimizer& a, std::vector<Tensor>& pa, torch::optim::Optimizer& b, std::vector<Tensor>& pb,
              int steps, uint64_t seed) {
  torch::manual_seed(seed);
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < pa.size(); ++i) {
      Tensor g = torch::randn_like(pa[i]) * (1.0 + double(i));
      pa[i].mutable_grad() = g.clone();
      pb[i].mutable_grad() = g.clone();
    }
    a.step();
    b.step();
  }
}

}  // namespace

TEST(FusedAdam, EqualsLibTorchAdam) {
  set_cpu_threads(2);
  for (double wd : {0.0, 1e-2}) {
    auto pa = make_params(torch::kFloat32, 7), pb = clones(pa);
    FusedAdam fused(pa, options(wd));
    torch::optim::Adam ref(pb, options(wd));
    run_both(fused, pa, ref, pb, 6, 11);
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_TRUE(torch::allclose(pa[i], pb[i], 1e-5, 1e-6)) << "param " << i << " wd " << wd << " max diff "
                                                             << (pa[i] - pb[i]).abs().max().item<double>();
      const auto& sa = state(fused, pa[i]);
      const auto& sb = state(ref, pb[i]);
      EXPECT_EQ(sa.step(), sb.step());
      EXPECT_TRUE(torch::allclose(sa.exp_avg(), sb.exp_avg(), 1e-5, 1e-6))
          << (sa.exp_avg() - sb.exp_avg()).abs().max().item<double>();
      EXPECT_TRUE(torch::allclose(sa.exp_avg_sq(), sb.exp_avg_sq(), 1e-5, 1e-6))
          << (sa.exp_avg_sq() - sb.exp_avg_sq()).abs().max().item<double>();
    }
    // and they moved: the comparison is not between two untouched copies
    EXPECT_GT((pa[0] - make_params(torch::kFloat32, 7)[0]).abs().max().item<double>(), 1e-3);
  }
}

TEST(FusedAdam, OperatorFallbackForDoubleEqualsLibTorchExactly) {
  auto pa = make_params(torch::kFloat64, 3), pb = clones(pa);
  FusedAdam fused(pa, options(1e-3));
  torch::optim::Adam ref(pb, options(1e-3));
  run_both(fused, pa, ref, pb, 4, 5);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "param " << i;
}

TEST(FusedAdam, ParametersWithoutGradientAreNotStepped) {
  auto pa = make_params(torch::kFloat32, 9);
  FusedAdam fused(pa, options(0.1));
  const Tensor before = pa[1].detach().clone();
  pa[0].mutable_grad() = torch::ones_like(pa[0]);
  fused.step();
  EXPECT_TRUE(torch::equal(pa[1], before));
  EXPECT_EQ(fused.state().size(), 1u);
}

TEST(FusedAdam, AFusedStepIsCalledWithTheParametersMomentsAfterTheOthers) {
  auto pa = make_params(torch::kFloat32, 13);
  FusedAdam fused(pa, options(0.0));
  int calls = 0;
  bool other_stepped_first = false;
  const Tensor other_before = pa[1].detach().clone();
  fused.fuse(pa[0], [&](const kernels::AdamElement& a, const Tensor& m, const Tensor& v) {
    ++calls;
    other_stepped_first = !torch::equal(pa[1], other_before);
    EXPECT_EQ(m.sizes(), pa[0].sizes());
    EXPECT_EQ(v.sizes(), pa[0].sizes());
    EXPECT_NEAR(a.step_size, 3e-3 / (1 - 0.8), 1e-9);  // first step: lr / (1 − β1)
  });
  pa[1].mutable_grad() = torch::ones_like(pa[1]);
  fused.step();  // pa[0] has no gradient: its fused step runs anyway
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(other_stepped_first);
}

TEST(FusedAdam, CheckpointsAreInterchangeableWithLibTorchAdam) {
  auto pa = make_params(torch::kFloat32, 17), pb = clones(pa);
  FusedAdam fused(pa, options(0.0));
  torch::optim::Adam ref(pb, options(0.0));
  run_both(fused, pa, ref, pb, 3, 19);
  // Fused → reference: a fresh reference loading the fused state continues like the fused one.
  std::stringstream buf;
  {
    torch::serialize::OutputArchive out;
    fused.save(out);
    out.save_to(buf);
  }
  auto pc = clones(pa);
  torch::optim::Adam loaded(pc, options(0.0));
  {
    torch::serialize::InputArchive in;
    in.load_from(buf);
    loaded.load(in);
  }
  run_both(fused, pa, loaded, pc, 2, 23);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::allclose(pa[i], pc[i], 1e-5, 1e-6)) << "param " << i;
}
