// CUBLAS_WORKSPACE_CONFIG for deterministic runs (bilevel/util/cublas_env.h): set when `deterministic` is requested
// and the variable is unset, kept when the user set it, untouched otherwise; and set by apply_runtime_settings
// before any CUDA work.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "bilevel/config/config.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/cublas_env.h"

using namespace bilevel;

namespace {

// Saves CUBLAS_WORKSPACE_CONFIG and restores it at the end of the scope.
class SavedEnv {
 public:
  SavedEnv() {
    if (const char* v = std::getenv("CUBLAS_WORKSPACE_CONFIG")) saved_ = v;
  }
  ~SavedEnv() {
    if (saved_) ::setenv("CUBLAS_WORKSPACE_CONFIG", saved_->c_str(), 1);
    else ::unsetenv("CUBLAS_WORKSPACE_CONFIG");
  }

 private:
  std::optional<std::string> saved_;
};

std::optional<std::string> current() {
  const char* v = std::getenv("CUBLAS_WORKSPACE_CONFIG");
  return v ? std::optional<std::string>(v) : std::nullopt;
}

}  // namespace

TEST(CublasEnv, SetOnlyWhenDeterministicAndUnset) {
  SavedEnv saved;
  ::unsetenv("CUBLAS_WORKSPACE_CONFIG");
  EXPECT_FALSE(apply_cublas_workspace_config(false));
  EXPECT_EQ(current(), std::nullopt);
  EXPECT_TRUE(apply_cublas_workspace_config(true));
  EXPECT_EQ(current(), std::string(":4096:8"));
  EXPECT_FALSE(apply_cublas_workspace_config(true));  // already set: left alone
  EXPECT_EQ(current(), std::string(":4096:8"));
}

TEST(CublasEnv, AValueTheUserSetIsKept) {
  SavedEnv saved;
  ::setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8", 1);
  EXPECT_FALSE(apply_cublas_workspace_config(true));
  EXPECT_EQ(current(), std::string(":16:8"));
  ::setenv("CUBLAS_WORKSPACE_CONFIG", "", 1);  // empty counts as unset
  EXPECT_TRUE(apply_cublas_workspace_config(true));
  EXPECT_EQ(current(), std::string(":4096:8"));
}

TEST(CublasEnv, RuntimeSettingsOfADeterministicConfigSetIt) {
  SavedEnv saved;
  ::unsetenv("CUBLAS_WORKSPACE_CONFIG");
  const char* yaml = "experiment:\n  name: t\ndata:\n  name: synthetic\n  validation: 0\ntrain:\n  threads: 1\n";
  apply_runtime_settings(load_config_text(yaml, "t.yaml", {"deterministic=false"}));
  EXPECT_EQ(current(), std::nullopt);
  apply_runtime_settings(load_config_text(yaml, "t.yaml", {"deterministic=true"}));
  EXPECT_EQ(current(), std::string(":4096:8"));
  apply_runtime_settings(load_config_text(yaml, "t.yaml", {"deterministic=false"}));  // restores LibTorch's default
}
