// `bilevel --plugin LIB.so`: a shared library built against bilevel::plugin (tests/plugin/sample_plugin.cpp)
// registers a quantizer, a data set with its own keys and an activation through the public registries; the
// command lists them in `train --help`, validates their keys, trains with them (also as 2 data-parallel ranks,
// which find the plugin through BILEVEL_PLUGINS), and without the plugin the same config is refused by name.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_paths.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace testutil;

namespace {

const std::string kYaml = R"(experiment:
  name: plug
seed: 3
data:
  name: stripes
  validation: 50
  stripes:
    train: 400
    test: 200
model:
  kind: mlp
  hidden: [32]
  activation: softsign
train:
  epochs: 4
  batch_size: 20
  threads: 1
optimizer:
  name: adam
  lr: 0.01
quantization:
  enabled: true
  weights:
    quantizer: half_ternary
    bits: 2
    solver: ste
)";

struct Workspace {
  TempDir tmp{"bilevel_test_plugin"};
  std::string config = tmp.write("plug.yaml", kYaml);
  std::vector<std::string> train(std::vector<std::string> extra = {}) const {
    std::vector<std::string> a{"--plugin", BILEVEL_SAMPLE_PLUGIN, "train", config,
                               "output.root=" + (tmp.path() / "out").string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
};

// A run of w.train(): it finished its 4 epochs, learned the stripes (one per class: separable), and its resolved
// config names each of `resolved`.
void expect_learned(const CliResult& r, const std::vector<std::string>& resolved) {
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path run = r.first_line();
  const Csv m = read_csv(run / "metrics.csv");
  ASSERT_EQ(m.rows.size(), 4u);
  EXPECT_GE(m.value(3, "test_accuracy"), 0.9) << read_file(run / "metrics.csv");
  const std::string config = read_file(run / "config.yaml");
  for (const auto& s : resolved) EXPECT_TRUE(contains(config, s)) << s << " missing from:\n" << config;
}

}  // namespace

TEST(Plugin, HelpListsThePluginsComponentsAndKeys) {
  CliResult r = run_cli({"--plugin", BILEVEL_SAMPLE_PLUGIN, "train", "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  for (const char* s : {"half_ternary", "stripes", "softsign", "gain_backprop", "rule.gain", "data.stripes.train",
                        "a plugin's"})
    EXPECT_TRUE(contains(r.out, s)) << s << " missing from:\n" << r.out;
  // Without the plugin, none of it.
  CliResult plain = run_cli({"train", "--help"});
  ASSERT_EQ(plain.exit_code, 0) << plain.describe();
  EXPECT_FALSE(contains(plain.out, "half_ternary"));
  EXPECT_FALSE(contains(plain.out, "data.stripes.train"));
  EXPECT_FALSE(contains(plain.out, "gain_backprop"));
}

// A learning rule defined in one file (the plugin's GainBackprop and its registration, nothing else) is listed
// above, trains, and has its key validated.
TEST(Plugin, TrainsWithThePluginsRule) {
  Workspace w;
  expect_learned(run_cli(w.train({"rule.name=gain_backprop", "rule.gain=2.0"})), {"gain_backprop", "gain: 2"});
  CliResult bad = run_cli(w.train({"rule.name=gain_backprop", "rule.gain=-1"}));
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "rule.gain")) << bad.describe();
}

TEST(Plugin, TrainsWithThePluginsQuantizerDataSetAndActivation) {
  Workspace w;
  expect_learned(run_cli(w.train()), {"half_ternary", "softsign"});  // separable, also with ternary weights
  // The data set's own keys are validated like any other.
  CliResult bad = run_cli(w.train({"data.stripes.train=0"}));
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "data.stripes.train")) << bad.describe();
  CliResult typo = run_cli(w.train({"data.stripes.trian=10"}));
  EXPECT_EQ(typo.exit_code, 2) << typo.describe();
  EXPECT_TRUE(contains(typo.err, "data.stripes.train")) << typo.describe();  // the suggestion
}

TEST(Plugin, RanksStartedByTheLauncherLoadItToo) {
  Workspace w;
  CliResult r = run_cli(w.train({"train.epochs=1", "--nproc", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(fs::exists(fs::path(r.first_line()) / "final.pt"));
}

TEST(Plugin, WithoutThePluginTheConfigIsRefusedByName) {
  Workspace w;
  CliResult r = run_cli({"train", w.config, "output.root=" + (w.tmp.path() / "out").string()});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "stripes")) << r.describe();
  EXPECT_FALSE(fs::exists(w.tmp.path() / "out"));
}

TEST(Plugin, AMissingLibraryIsANamedError) {
  Workspace w;
  CliResult r = run_cli({"--plugin", (w.tmp.path() / "nope.so").string(), "train", w.config});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "cannot load plugin")) << r.describe();
  EXPECT_TRUE(contains(r.err, "nope.so")) << r.describe();
  CliResult dangling = run_cli({"--plugin"});
  EXPECT_EQ(dangling.exit_code, 2) << dangling.describe();
}
