// bilevel train's warnings for an energy-based run that cannot learn with its settings (EnergyRule::
// epoch_warnings): most examples end the free phase on its step limit under an estimator that takes the states'
// drift for gradient (one-sided EP; not symmetric EP), and a nudge that no longer moves the saturated output.
// Each is logged once per run, whatever the number of epochs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_paths.h"
#include "test_util.h"

using namespace testutil;

namespace {

const char* kLimit = "ended the free phase on its step limit";
const char* kSaturated = "barely moves the output";

CliResult train(const TempDir& dir, const std::string& rest, int epochs = 1, const std::string& extra = "") {
  const std::string cfg = dir.write("cfg.yaml", small_synthetic_yaml("warn", 0, R"(  activation: sigmoid4
train:
  loss: mse
  batch_size: 50
  epochs: )" + std::to_string(epochs) + "\n" + rest));
  std::vector<std::string> args{"train", cfg, "output.root=" + (dir / "runs").string(), "model.hidden=[16,16]"};
  if (!extra.empty()) args.push_back(extra);
  return run_cli(args);
}

size_t count(const std::string& haystack, const std::string& needle) { return occurrences(haystack, needle); }

}  // namespace

TEST(EpWarnings, OneSidedEpWithAnUnsettledFreePhaseWarnsOnce) {
  TempDir dir;
  const CliResult r = train(dir, R"(rule:
  name: ep
  beta: 0.1
solver:
  name: fixed_point
  free_steps: 2
  nudged_steps: 2
)", 2);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(count(r.err, kLimit), 1u) << r.describe();
  EXPECT_NE(r.err.find("solver.free_steps: 2"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("ep_symmetric"), std::string::npos) << "the warning names the remedy\n" << r.describe();
}

TEST(EpWarnings, SymmetricEpAndASettledFreePhaseDoNotWarn) {
  TempDir a, b;
  const CliResult sym = train(a, R"(rule:
  name: ep_symmetric
  beta: 0.1
solver:
  name: fixed_point
  free_steps: 2
  nudged_steps: 2
)");
  ASSERT_EQ(sym.exit_code, 0) << sym.describe();
  EXPECT_EQ(count(sym.err, kLimit), 0u) << sym.describe();
  const CliResult settled = train(b, R"(rule:
  name: ep
  beta: 0.1
solver:
  name: layerwise
  free_steps: 200
  nudged_steps: 50
  tol: 1.0e-6
)");
  ASSERT_EQ(settled.exit_code, 0) << settled.describe();
  EXPECT_EQ(count(settled.err, kLimit), 0u) << settled.describe();
  EXPECT_EQ(count(settled.err, kSaturated), 0u) << settled.describe();
}

TEST(EpWarnings, SaturatedStatesWarnThatTheNudgeDoesNotMoveTheOutput) {
  TempDir dir;
  const CliResult r = train(dir, R"(rule:
  name: ep_symmetric
  beta: 0.1
solver:
  name: layerwise
  free_steps: 20
  nudged_steps: 5
)", 1, "model.init_gain=60");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(count(r.err, kSaturated), 1u) << r.describe();
}
