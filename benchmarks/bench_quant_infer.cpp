// Exported integer inference against the float evaluation of the same trained run, in one process, one thread,
// the same batches, interleaved (A B A B ...), and the exported file's size against the float checkpoint's.
//
//   bench_quant_infer RUN_DIR [--batch N] [--reps R] [--examples N]
//
// The float side is what `bilevel eval RUN_DIR` runs (the learning rule's prediction with the fake-quantized
// weights); the integer side is what `bilevel eval --model` runs (bilevel/quant/integer_model.h).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "bilevel/quant/export.h"
#include "bilevel/quant/integer_model.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/runner.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/error.h"
#include "bilevel/util/threads.h"

using namespace bilevel;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::fprintf(stderr, "usage: bench_quant_infer RUN_DIR [--batch N] [--reps R] [--examples N]\n");
    return 2;
  }
  int64_t batch = 1000, reps = 5, examples = 10000;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--batch" && i + 1 < argc) batch = std::stoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::stoll(argv[++i]);
    else if (a == "--examples" && i + 1 < argc) examples = std::stoll(argv[++i]);
    else return std::fprintf(stderr, "unknown argument %s\n", a.c_str()), 2;
  }
  spdlog::set_level(spdlog::level::warn);
  try {
    RunDir dir = RunDir::open(argv[1]);
    ExperimentConfig cfg = run_config(dir);
    Experiment x = prepare(cfg);
    set_cpu_threads(1);
    const fs::path model = fs::exists(dir.final_model()) ? dir.final_model() : *latest_checkpoint(dir.checkpoints());
    load_model(model, *x.net);
    x.net->eval();
    ExportedModel m = export_model(*x.net, x.quant.is_empty() ? nullptr : x.quant.get(), nullptr);
    const fs::path file = fs::temp_directory_path() / ("bench_quant_" + std::to_string(::getpid()) + ".bqm");
    write_exported_model(file, m);
    const double packed = double(fs::file_size(file)), float_size = double(fs::file_size(model));
    IntegerModel im(read_exported_model(file));
    fs::remove(file);
    const int64_t N = std::min<int64_t>(examples, x.data.test.size());
    torch::Tensor images = x.data.test.images.slice(0, 0, N).contiguous();
    std::vector<double> tf, ti;
    int64_t agree = 0;
    for (int64_t r = 0; r <= reps; ++r) {
      torch::NoGradGuard no_grad;
      auto t0 = std::chrono::steady_clock::now();
      std::vector<torch::Tensor> preds;
      for (int64_t b = 0; b < N; b += batch) preds.push_back(x.rule->predict(x.net, images.slice(0, b, std::min(N, b + batch))).argmax(1));
      auto t1 = std::chrono::steady_clock::now();
      std::vector<float> out;
      int64_t same = 0;
      for (int64_t b = 0, i = 0; b < N; b += batch, ++i) {
        const int64_t n = std::min(batch, N - b);
        out = im.forward(images.data_ptr<float>() + b * images[0].numel(), n);
        torch::Tensor got = torch::from_blob(out.data(), {n, m.num_classes}).argmax(1);
        same += got.eq(preds[size_t(i)]).sum().item<int64_t>();
      }
      auto t2 = std::chrono::steady_clock::now();
      if (r == 0) { agree = same; continue; }  // repetition 0 warms caches
      tf.push_back(std::chrono::duration<double>(t1 - t0).count());
      ti.push_back(std::chrono::duration<double>(t2 - t1).count());
    }
    std::sort(tf.begin(), tf.end());
    std::sort(ti.begin(), ti.end());
    const double f = tf[tf.size() / 2], i = ti[ti.size() / 2];
    std::printf("run: %s\nexamples: %lld  batch: %lld  threads: 1  reps: %lld\n", argv[1], static_cast<long long>(N),
                static_cast<long long>(batch), static_cast<long long>(reps));
    for (const auto& d : im.describe()) std::printf("  %s\n", d.c_str());
    std::printf("float eval:    %10.1f examples/s\ninteger eval:  %10.1f examples/s\nspeed-up:      %10.2fx\n",
                double(N) / f, double(N) / i, f / i);
    std::printf("predictions agree: %.4f\n", double(agree) / double(N));
    std::printf("file: %.0f bytes vs %s %.0f bytes: %.1fx smaller\n", packed, model.filename().c_str(), float_size,
                float_size / packed);
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
