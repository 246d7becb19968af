// bilevel export / summary / eval --model: the quantized model as a file, its sizes, and its integer inference.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "bilevel/data/data_source.h"
#include "bilevel/data/dataset.h"
#include "bilevel/quant/export.h"
#include "bilevel/quant/integer_model.h"
#include "bilevel/run/build_info.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/runner.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/clock.h"
#include "bilevel/util/error.h"
#include "bilevel/util/log.h"
#include "bilevel/util/threads.h"
#include "commands.h"

namespace bilevel::cli {
namespace fs = std::filesystem;
namespace {

// The option's value, or throws naming the option.
std::string value_of(const Args& args, size_t& i, const std::string& command) {
  if (i + 1 >= args.size()) throw UserError("bilevel " + command + ": " + args[i] + " needs a value");
  return args[++i];
}

std::string run_git_commit(const RunDir& dir) {
  if (fs::exists(dir.meta())) {
    YAML::Node meta = YAML::LoadFile(dir.meta().string());
    if (meta["git_commit"]) return meta["git_commit"].as<std::string>();
  }
  return build_info().git_commit;
}

// Shape of the data set named in cfg without reading it.
std::pair<std::vector<int64_t>, int64_t> data_shape(const ExperimentConfig& cfg) {
  const DataShape s = make_data_source(cfg.data)->shape();
  return {s.example, s.classes};
}

std::string human_bytes(double b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (b >= 1024 && u < 3) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, unit[u]);
  return buf;
}

}  // namespace

int export_model(const Args& args) {
  if (wants_help(args)) {
    std::printf(R"(usage: bilevel export RUN_DIR [--checkpoint best|final|FILE] [-o FILE]

Writes the run's model as integer weights: bit-packed for binary (1 bit) and ternary (2 bits) layers, packed
k-bit codes otherwise, with per-layer or per-channel scales and zero points, biases, the activation quantizer,
the architecture, the resolved config, its hash and the git commit (format: docs/quantized-model-format.md).
Default checkpoint: final.pt (or the latest checkpoint); default output: RUN_DIR/model.bqm.
Checks the exported integer model's predictions against the run's on up to 1000 test examples.
Evaluate it with `bilevel eval --model FILE`.
)");
    return 0;
  }
  const RunArgs run = parse_run_args(args, "export", /*with_output=*/true);
  init_console_logging();
  RunDir dir = RunDir::open(run.dir);
  fs::path file;
  Experiment x = load_run(run.dir, run.checkpoint, &file);
  const ExperimentConfig& cfg = x.cfg;
  const fs::path target = run.output.empty() ? dir.root / "model.bqm" : fs::path(run.output);
  std::vector<std::string> warnings;
  ExportedModel m = bilevel::export_model(*x.net, x.quant.is_empty() ? nullptr : x.quant.get(), &warnings);
  for (const auto& w : warnings) spdlog::warn("{}", w);
  m.config_yaml = cfg.to_yaml();
  m.config_hash = cfg.hash();
  m.git_commit = run_git_commit(dir);
  m.source_run = fs::absolute(dir.root).string();
  m.checkpoint = fs::absolute(file).string();
  m.created = now_iso();
  write_exported_model(target, m);
  // Agreement with the run's own predictions.
  const int64_t n = std::min<int64_t>(1000, x.data.test.size());
  if (n > 0) {
    const Dataset batch = x.data.test.slice(0, n);
    torch::Tensor ref = x.rule->predict(x.net, batch.images).argmax(1);
    IntegerModel im(read_exported_model(target));
    torch::Tensor images = batch.images.contiguous();
    std::vector<float> outv = im.forward(images.data_ptr<float>(), n);
    torch::Tensor got = torch::from_blob(outv.data(), {n, m.num_classes}).argmax(1);
    const double agree = got.eq(ref).to(torch::kFloat64).mean().item<double>();
    spdlog::info("integer model agrees with the run's predictions on {:.2f}% of {} test examples", 100 * agree, n);
  }
  const double size = double(fs::file_size(target)), ref_size = double(fs::file_size(file));
  spdlog::info("{}: {} ({:.1f}x smaller than {}, {})", target.string(), human_bytes(size), ref_size / size,
               file.filename().string(), human_bytes(ref_size));
  std::cout << target.string() << std::endl;
  return 0;
}

int eval_model(const std::string& path, const Args& rest) {
  int64_t batch = 0, threads = 1;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--batch-size") batch = std::stoll(value_of(rest, i, "eval"));
    else if (rest[i] == "--threads") threads = std::stoll(value_of(rest, i, "eval"));
    else throw UserError("bilevel eval --model: unexpected argument '" + rest[i] + "'");
  }
  init_console_logging();
  ExportedModel m = read_exported_model(path);
  ExperimentConfig cfg = load_config_text(m.config_yaml, path);
  if (batch <= 0) batch = cfg.train.eval_batch_size;
  set_cpu_threads(int(threads));
  IntegerModel im(m);
  for (const auto& d : im.describe()) spdlog::info("{}", d);
  DataSplits data = load_data(cfg.data, cfg.seed);
  const Dataset& test = data.test;
  torch::Tensor images = test.images.contiguous();
  const int64_t N = test.size(), per = images.numel() / std::max<int64_t>(N, 1);
  int64_t correct = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < N; b += batch) {
    const int64_t n = std::min(batch, N - b);
    std::vector<float> out = im.forward(images.data_ptr<float>() + b * per, n);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = out.data() + i * m.num_classes;
      int64_t arg = 0;
      for (int64_t c = 1; c < m.num_classes; ++c)
        if (row[c] > row[arg]) arg = c;
      correct += arg == test.labels[b + i].item<int64_t>();
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("test_accuracy: %.6f\nexamples: %lld\nseconds: %.4f\nexamples_per_second: %.1f\nthreads: %lld\nbatch_size: %lld\n",
              double(correct) / double(std::max<int64_t>(N, 1)), static_cast<long long>(N), seconds,
              double(N) / seconds, static_cast<long long>(threads), static_cast<long long>(batch));
  return 0;
}

int summary(const Args& args) {
  if (wants_help(args) || args.empty()) {
    std::printf(R"(usage: bilevel summary CONFIG.yaml|RUN_DIR [key.path=value ...]

Per layer: parameters, weight bit width, multiply-accumulates per example, memory as float32 and packed at the
configured bit widths, and the compression ratio (like Larq's model summary). Reads no data.
)");
    return args.empty() ? 2 : 0;
  }
  const fs::path src = args[0];
  Args overrides(args.begin() + 1, args.end());
  ExperimentConfig cfg = fs::is_directory(src) ? load_config((src / "config.yaml").string(), overrides)
                                               : load_config(src.string(), overrides);
  validate_quantization(cfg);
  auto rule = make_rule(cfg);
  auto [shape, classes] = data_shape(cfg);
  LayeredNet net(cfg.model, shape, classes, rule->objective().activate_output());
  Quantization quant{nullptr};
  if (cfg.get<bool>("quantization.enabled")) quant = Quantization(cfg, net);
  const auto rows = summarize(*net, quant.is_empty() ? nullptr : quant.get());
  std::printf("%-28s %12s %5s %14s %12s %12s %8s\n", "layer", "params", "bits", "MACs/example", "float32", "packed",
              "ratio");
  int64_t params = 0, macs = 0, fb = 0, pb = 0;
  for (const auto& r : rows) {
    std::printf("%-28s %12lld %5d %14lld %12s %12s %7.1fx\n", r.name.c_str(), static_cast<long long>(r.params),
                r.weight_bits, static_cast<long long>(r.macs), human_bytes(double(r.float_bytes)).c_str(),
                human_bytes(double(r.packed_bytes)).c_str(), double(r.float_bytes) / double(r.packed_bytes));
    params += r.params, macs += r.macs, fb += r.float_bytes, pb += r.packed_bytes;
  }
  std::printf("%-28s %12lld %5s %14lld %12s %12s %7.1fx\n", "total", static_cast<long long>(params), "",
              static_cast<long long>(macs), human_bytes(double(fb)).c_str(), human_bytes(double(pb)).c_str(),
              double(fb) / double(pb));
  if (quant.is_empty()) std::printf("(quantization.enabled is false: every layer float32)\n");
  else if (auto* a = quant->activation_quantizer())
    std::printf("activations: %s, %d bit%s\n", a->options().kind.c_str(), a->options().bits, a->options().bits > 1 ? "s" : "");
  return 0;
}

}  // namespace bilevel::cli
