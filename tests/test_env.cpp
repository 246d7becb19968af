// `bilevel env`: version matching, conda spec parsing, the environment report, and the CLI end to end.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <torch/version.h>
#include <yaml-cpp/yaml.h>

#include "bilevel/run/environment.h"
#include "bilevel/run/environment_file.h"
#include "bilevel/util/error.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using namespace bilevel;

namespace {

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr together
};

Result run_cli(const std::string& args) {
  Result r;
  const std::string cmd = std::string("'") + BILEVEL_CLI + "' " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("bilevel_test_env_" + std::to_string(::getpid()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path f = path_ / name;
    std::ofstream(f) << text;
    return f.string();
  }

 private:
  fs::path path_;
};

std::string quoted(const std::string& s) { return "'" + s + "'"; }

void require_cli() {
  ASSERT_TRUE(fs::exists(BILEVEL_CLI)) << BILEVEL_CLI << " is missing: build the bilevel_cli target first";
}

// A report with fixed values, so the pin logic is tested independently of this machine.
EnvReport fake_report(const std::string& blas, const std::string& cuda_toolkit, const std::string& compiler) {
  EnvReport r;
  r.entries = {{"libtorch", "1.13.1"},       {"compiler", compiler},        {"compiler_version", "12.2.0"},
               {"cmake", "3.25.1"},          {"cuda_toolkit", cuda_toolkit}, {"cuda_runtime", "none"},
               {"cudnn", "none"},            {"blas", blas},                {"blas_version", "0.3.21"},
               {"eigen", "3.4.0"},           {"yaml_cpp", "0.7.0"},         {"spdlog", "1.10.0"},
               {"fmt", "9.1.0"},             {"zlib", "1.2.13"},            {"gtest", "unknown"}};
  return r;
}

PinCheck check_one(const std::string& spec, const EnvReport& r) {
  auto checks = check_pins({parse_conda_spec(spec)}, r);
  EXPECT_EQ(checks.size(), 1u);
  return checks.at(0);
}

}  // namespace

TEST(VersionMatches, PrefixOnComponentBoundaries) {
  EXPECT_TRUE(version_matches("1.13", "1.13.1"));
  EXPECT_TRUE(version_matches("1.13.1", "1.13.1"));
  EXPECT_TRUE(version_matches("1", "1.13.1"));
  EXPECT_TRUE(version_matches("", "1.13.1"));
  EXPECT_FALSE(version_matches("1.13.0", "1.13.1"));
  EXPECT_FALSE(version_matches("1.1", "1.13.1"));  // not a string prefix match
  EXPECT_FALSE(version_matches("1.13.1.2", "1.13.1"));
  EXPECT_FALSE(version_matches("0.4.0", "1.13.1"));
  EXPECT_FALSE(version_matches("2", "12.2.0"));
}

TEST(VersionMatches, IgnoresLocalSuffixesAndLeadingZeros) {
  EXPECT_TRUE(version_matches("1.13.1", "1.13.1+dfsg"));
  EXPECT_TRUE(version_matches("2.1.0", "2.1.0+cu121"));
  EXPECT_TRUE(version_matches("3.4.0", "3.04.0"));
  EXPECT_FALSE(version_matches("1.13.2", "1.13.1+dfsg"));
}

TEST(ParseCondaSpec, Forms) {
  auto p = parse_conda_spec("libtorch=1.13.1");
  EXPECT_EQ(p.name, "libtorch");
  EXPECT_EQ(p.version, "1.13.1");
  EXPECT_FALSE(p.range);
  EXPECT_EQ(parse_conda_spec("eigen==3.4").version, "3.4");
  EXPECT_EQ(parse_conda_spec("cmake 3.25").version, "3.25");
  EXPECT_EQ(parse_conda_spec("  cmake   3.25.1  ").version, "3.25.1");
  p = parse_conda_spec("conda-forge::yaml-cpp=0.7.0=h27087fc_2");
  EXPECT_EQ(p.name, "yaml-cpp");
  EXPECT_EQ(p.version, "0.7.0");
  EXPECT_EQ(parse_conda_spec("pytorch=1.13.1=cpu_*").version, "1.13.1");
  EXPECT_EQ(parse_conda_spec("gtest=1.12.*").version, "1.12");
  EXPECT_EQ(parse_conda_spec("gtest 1.12.1 h1234_0").version, "1.12.1");
  EXPECT_EQ(parse_conda_spec("Eigen=3.4.0").name, "eigen");
  EXPECT_EQ(parse_conda_spec("libblas=*=*openblas").version, "");
  p = parse_conda_spec("python");
  EXPECT_EQ(p.name, "python");
  EXPECT_EQ(p.version, "");
  p = parse_conda_spec("numpy>=1.21,<2");
  EXPECT_EQ(p.name, "numpy");
  EXPECT_TRUE(p.range);
}

TEST(ParseCondaSpec, RejectsNonSpecs) {
  EXPECT_THROW(parse_conda_spec(""), UserError);
  EXPECT_THROW(parse_conda_spec("=1.2"), UserError);
  EXPECT_THROW(parse_conda_spec("eigen="), UserError);
  EXPECT_THROW(parse_conda_spec("eigen=abc"), UserError);
  EXPECT_THROW(parse_conda_spec("eigen@3.4"), UserError);
}

TEST(ReadEnvironmentFile, ReadsDependenciesAndSkipsPip) {
  TempDir dir;
  const auto f = dir.write("env.yml",
                           "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - eigen=3.4.0\n  - cmake 3.25\n"
                           "  - pip\n  - pip:\n      - torchvision==0.14\n");
  const auto pins = read_environment_file(f);
  ASSERT_EQ(pins.size(), 3u);
  EXPECT_EQ(pins[0].name, "eigen");
  EXPECT_EQ(pins[0].line, 5);
  EXPECT_EQ(pins[1].version, "3.25");
  EXPECT_EQ(pins[2].name, "pip");
}

TEST(ReadEnvironmentFile, ErrorsNameTheFileAndLine) {
  TempDir dir;
  const auto bad = dir.write("bad.yml", "name: x\ndependencies:\n  - eigen=3.4.0\n  - [unclosed\n");
  try {
    read_environment_file(bad);
    FAIL() << "no error for malformed YAML";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(bad), std::string::npos) << msg;
    EXPECT_NE(msg.find(bad + ":"), std::string::npos) << msg;  // with a line number
  }
  const auto nodeps = dir.write("nodeps.yml", "name: x\n");
  EXPECT_THROW(read_environment_file(nodeps), UserError);
  const auto notlist = dir.write("notlist.yml", "dependencies: eigen\n");
  EXPECT_THROW(read_environment_file(notlist), UserError);
  const auto badspec = dir.write("badspec.yml", "dependencies:\n  - eigen=3.4\n  - \"=1.0\"\n");
  try {
    read_environment_file(badspec);
    FAIL() << "no error for a bad spec";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(badspec + ":3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_environment_file(dir.write("missing_dir_marker", "") + ".does-not-exist"), UserError);
}

TEST(CheckPins, StatusPerPackage) {
  const EnvReport r = fake_report("OpenBLAS 0.3.21 (pthread)", "none", "GNU 12.2.0");
  EXPECT_EQ(check_one("libtorch=1.13.1", r).status, PinStatus::kOk);
  EXPECT_EQ(check_one("pytorch=1.13", r).status, PinStatus::kOk);
  EXPECT_EQ(check_one("libtorch=0.4.0", r).status, PinStatus::kMismatch);
  EXPECT_EQ(check_one("libtorch=1.13.0", r).status, PinStatus::kMismatch);
  EXPECT_EQ(check_one("eigen=3.4.0", r).status, PinStatus::kOk);
  EXPECT_EQ(check_one("fmt=9.1.0", r).status, PinStatus::kOk);
  EXPECT_EQ(check_one("cmake=3.25", r).status, PinStatus::kOk);
  EXPECT_EQ(check_one("gxx=12.2", r).status, PinStatus::kOk);
  EXPECT_EQ(check_one("gxx=11", r).status, PinStatus::kMismatch);
  EXPECT_EQ(check_one("clangxx=12.2", r).status, PinStatus::kMismatch);  // built with GNU
  EXPECT_EQ(check_one("openblas=0.3.21", r).status, PinStatus::kOk);
  EXPECT_EQ(check_one("openblas=0.3.20", r).status, PinStatus::kMismatch);
  EXPECT_EQ(check_one("gtest=1.12.1", r).status, PinStatus::kUnchecked);  // not recorded
  EXPECT_EQ(check_one("python=3.10", r).status, PinStatus::kUnchecked);
  EXPECT_EQ(check_one("cxx-compiler=1.5.2", r).status, PinStatus::kUnchecked);  // metapackage version
  EXPECT_EQ(check_one("numpy>=1.0", r).status, PinStatus::kUnchecked);
  EXPECT_EQ(check_one("eigen>=3", r).status, PinStatus::kUnchecked);  // ranges are shown, not judged
  const auto cuda = check_one("cuda-toolkit=13.0", r);
  EXPECT_EQ(cuda.status, PinStatus::kSkipped);
  EXPECT_NE(cuda.found.find("not built with CUDA"), std::string::npos);
  EXPECT_EQ(check_one("cudnn=9", r).status, PinStatus::kSkipped);
}

TEST(CheckPins, ReferenceBlasFailsAnOpenblasPin) {
  const EnvReport r = fake_report("reference", "none", "GNU 12.2.0");
  const auto c = check_one("openblas=0.3.21", r);
  EXPECT_EQ(c.status, PinStatus::kMismatch);
  EXPECT_NE(c.found.find("reference"), std::string::npos);
}

TEST(CheckPins, CudaPinsAreCheckedOnCudaBuilds) {
  const EnvReport r = fake_report("OpenBLAS 0.3.21", "12.4.131", "GNU 12.2.0");
  EXPECT_EQ(check_one("cuda-toolkit=12.4", r).status, PinStatus::kOk);
  EXPECT_EQ(check_one("cuda-toolkit=13.0", r).status, PinStatus::kMismatch);
  EXPECT_EQ(check_one("cudnn=9", r).status, PinStatus::kMismatch);  // CUDA build without cuDNN
}

TEST(CheckPins, TableListsEachMismatch) {
  const EnvReport r = fake_report("OpenBLAS 0.3.21", "none", "GNU 12.2.0");
  const auto checks = check_pins({parse_conda_spec("libtorch=0.4.0"), parse_conda_spec("eigen=3.4.0"),
                                  parse_conda_spec("fmt=8")},
                                 r);
  const std::string table = format_checks(checks);
  EXPECT_NE(table.find("MISMATCH: libtorch pinned 0.4.0, found 1.13.1"), std::string::npos) << table;
  EXPECT_NE(table.find("MISMATCH: fmt pinned 8, found 9.1.0"), std::string::npos) << table;
  EXPECT_NE(table.find("1 ok, 2 mismatched"), std::string::npos) << table;
}

TEST(Report, HasLibTorchAndBlas) {
  const EnvReport r = collect_environment();
  const std::string torch_minor = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
  EXPECT_TRUE(version_matches(torch_minor, r.get("libtorch"))) << r.get("libtorch");
  EXPECT_FALSE(r.get("libtorch_headers").empty());
  EXPECT_FALSE(r.get("blas").empty());
  EXPECT_TRUE(r.has("blas_library"));
  EXPECT_NE(r.get("blas"), "unknown") << format_report(r);
  for (const char* key : {"git_commit", "compiler", "eigen", "yaml_cpp", "spdlog", "os", "cpu_model", "cudnn"})
    EXPECT_TRUE(r.has(key)) << key;
  // Entry names are unique, so the report is a valid YAML map.
  std::set<std::string> names;
  for (const auto& e : r.entries) EXPECT_TRUE(names.insert(e.name).second) << e.name;
}

TEST(Report, TextIsYamlWithTheSameValues) {
  EnvReport r = collect_environment();
  // Values YAML would misread unquoted.
  r.entries.push_back({"tricky", "Linux 6.1 #1 SMP: x"});
  r.entries.push_back({"version_like", "1.10"});
  r.warnings.push_back("a: b");
  const YAML::Node parsed = YAML::Load(format_report(r));
  ASSERT_TRUE(parsed.IsMap());
  for (const auto& e : r.entries) EXPECT_EQ(parsed[e.name].as<std::string>(), e.value) << e.name;
  ASSERT_TRUE(parsed["warnings"].IsSequence());
  const YAML::Node node = environment_yaml(r);
  EXPECT_EQ(node["tricky"].as<std::string>(), "Linux 6.1 #1 SMP: x");
  EXPECT_EQ(node["warnings"][0].as<std::string>(), "a: b");
  EXPECT_EQ(node["libtorch"].as<std::string>(), r.get("libtorch"));
}

// ---- the CLI ----

TEST(EnvCli, PrintsTheReport) {
  require_cli();
  const auto r = run_cli("env");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("libtorch:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("blas:"), std::string::npos) << r.output;
  EXPECT_NO_THROW(YAML::Load(r.output)) << r.output;
}

TEST(EnvCli, HelpAndBadOptions) {
  require_cli();
  auto r = run_cli("env --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("--check"), std::string::npos);
  r = run_cli("env --frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--frobnicate"), std::string::npos) << r.output;
  r = run_cli("env --check");
  EXPECT_EQ(r.code, 2) << r.output;
}

TEST(EnvCli, CheckPassesWhenPinsMatchThisMachine) {
  require_cli();
  const EnvReport env = collect_environment();
  std::string deps = "  - libtorch=" + env.get("libtorch") + "\n  - eigen=" + env.get("eigen") +
                     "\n  - yaml-cpp=" + env.get("yaml_cpp") + "\n  - spdlog==" + env.get("spdlog") +
                     "\n  - zlib " + env.get("zlib") + "\n  - cmake=" + env.get("cmake") + "\n  - python=3.10\n";
  if (env.has("fmt")) deps += "  - fmt=" + env.get("fmt") + "\n";
  if (env.get("compiler").rfind("GNU", 0) == 0) deps += "  - gxx=" + env.get("compiler_version") + "\n";
  if (env.get("blas").rfind("OpenBLAS", 0) == 0 && env.has("blas_version"))
    deps += "  - openblas=" + env.get("blas_version") + "\n";
  if (env.get("cuda_toolkit") == "none" && env.get("cuda_runtime") == "none") deps += "  - cuda-toolkit=13.0\n";
  TempDir dir;
  const auto f = dir.write("match.yml", "name: t\nchannels:\n  - conda-forge\ndependencies:\n" + deps);
  const auto r = run_cli("env --check " + quoted(f));
  EXPECT_EQ(r.code, 0) << deps << r.output;
  EXPECT_NE(r.output.find("0 mismatched"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("MISMATCH"), std::string::npos) << r.output;
}

TEST(EnvCli, WrongLibTorchPinExits3) {
  require_cli();
  TempDir dir;
  const auto f = dir.write("wrong.yml", "name: t\ndependencies:\n  - libtorch=0.4.0\n  - python\n");
  const auto r = run_cli("env --check " + quoted(f));
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("MISMATCH: libtorch"), std::string::npos) << r.output;
}

TEST(EnvCli, MalformedFileExits2) {
  require_cli();
  TempDir dir;
  const auto f = dir.write("broken.yml", "name: t\ndependencies:\n  - eigen=3.4.0\n   - : [\n");
  auto r = run_cli("env --check " + quoted(f));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(f), std::string::npos) << r.output;
  r = run_cli("env --check " + quoted(f + ".missing"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(f + ".missing"), std::string::npos) << r.output;
}

// Debian's Netlib BLAS, put in front of the alternatives for one process only: the report must notice.
TEST(EnvCli, WarnsAboutTheReferenceBlas) {
  require_cli();
  const fs::path netlib = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3";
  if (!fs::exists(netlib)) GTEST_SKIP() << netlib << " not installed";
  TempDir dir;
  const fs::path lib = fs::path(dir.write("placeholder", "")).parent_path() / "libblas.so.3";
  fs::create_symlink(netlib, lib);
  const std::string prefix = "env LD_LIBRARY_PATH=" + quoted(lib.parent_path().string()) + " '" + BILEVEL_CLI + "'";
  FILE* p = ::popen((prefix + " env 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_EQ(YAML::Load(out)["blas"].as<std::string>(), "reference") << out;
  EXPECT_NE(out.find("reference BLAS"), std::string::npos) << out;
  EXPECT_NE(out.find("libopenblas0-pthread"), std::string::npos) << out;
}

// What CI verifies: the repository's environment.yml describes this machine.
TEST(EnvCli, RepositoryEnvironmentFileMatches) {
  require_cli();
#ifdef __clang__
  // environment.yml pins Debian's g++; the clang build (fuzz targets, sanitizer suite) is another toolchain.
  GTEST_SKIP() << "built with clang; environment.yml pins g++";
#endif
  const std::string f = std::string(BILEVEL_SOURCE_DIR) + "/environment.yml";
  ASSERT_TRUE(fs::exists(f));
  const auto r = run_cli("env --check " + quoted(f));
  EXPECT_EQ(r.code, 0) << r.output;
}
