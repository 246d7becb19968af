// The fused relaxation's buffer checks (energy/relax_buffers.h): a state or scratch buffer on another device than
// the drive, of another shape or dtype, or missing, fails naming it before any pointer reaches a kernel.
#include <gtest/gtest.h>

#include <string>

#include "bilevel/energy/fused_relaxation.h"
#include "bilevel/energy/relax_buffers.h"
#include "oracle/ep_test_support.h"

using namespace bilevel;
using torch::Tensor;

namespace {

struct Fixture {
  LayeredNet net = ep_test::make_mlp(12, {9, 7}, 4, "sigmoid", "mse", 1.5, 3);
  std::unique_ptr<Objective> obj = make_objective("mse");
  std::unique_ptr<LayeredEnergy> energy;
  EnergyBatch batch;
  EnergyState st;
  Fixture() {
    net->to(torch::kFloat32);
    energy = std::make_unique<LayeredEnergy>(*net, Neuron::from_activation(net->rho()), *obj);
    energy->prepare(batch, torch::rand({5, 12}), torch::randint(0, 4, {5}, torch::kLong));
    energy->init_state(batch, st);
  }
  std::string error() {
    try {
      check_relax_buffers(*energy, batch, st);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  }
};

}  // namespace

TEST(RelaxBuffers, GoodBuffersPassAndTheRelaxationRuns) {
  Fixture f;
  EXPECT_EQ(f.error(), "");
  const SolveStats s = fused_relaxation(*f.energy, f.batch, f.st, Nudge::none(), 5, 0.0);
  EXPECT_EQ(s.steps, 5);
}

TEST(RelaxBuffers, AWrongDeviceShapeOrDtypeIsNamed) {
  {
    Fixture f;  // a buffer on another device than the drive (meta stands for CUDA on a machine without one)
    f.st.scratch[1] = torch::empty({5, 7}, torch::TensorOptions().device(torch::kMeta));
    EXPECT_NE(f.error().find("scratch buffer of state 2 is on meta but the batch's drive is on cpu"), std::string::npos)
        << f.error();
    EXPECT_THROW(fused_relaxation(*f.energy, f.batch, f.st, Nudge::none(), 5, 0.0), std::invalid_argument);
  }
  {
    Fixture f;
    f.st.s[0] = torch::zeros({5, 8});
    EXPECT_NE(f.error().find("state 1 has shape [5, 8]; expected [5, 9]"), std::string::npos) << f.error();
  }
  {
    Fixture f;
    f.st.s[2] = f.st.s[2].to(torch::kFloat64);
    EXPECT_NE(f.error().find("state 3 has dtype Double"), std::string::npos) << f.error();
  }
  {
    Fixture f;
    f.st.scratch.pop_back();
    EXPECT_NE(f.error().find("the energy has 3 states"), std::string::npos) << f.error();
  }
  {
    Fixture f;
    f.st.s[1] = torch::zeros({7, 5}).t();
    EXPECT_NE(f.error().find("state 2 is not contiguous"), std::string::npos) << f.error();
  }
}
