#include "bilevel/train/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

#include "bilevel/data/batches.h"
#include "bilevel/run/metrics.h"
#include "bilevel/train/divergence.h"
#include "bilevel/train/probe.h"
#include "bilevel/util/crash_points.h"
#include "bilevel/util/log.h"
#include "bilevel/util/progress.h"

namespace bilevel {

std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

EvalResult evaluate(LearningRule& rule, LayeredNet& net, const Dataset& data, int64_t batch_size,
                    torch::Device device) {
  EvalResult r;
  if (data.size() == 0) return r;
  torch::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  Batches batches(data, batch_size, false, 0, 0);
  double loss = 0;
  int64_t correct = 0;
  for (int64_t i = 0; i < batches.count(); ++i) {
    auto [x, y] = batches.get(i);
    x = x.to(device), y = y.to(device);
    auto out = rule.predict(net, x);
    loss += rule.objective().loss(out, y).sum().item<double>();
    correct += out.argmax(1).eq(y).sum().item<int64_t>();
  }
  r.count = data.size();
  r.loss = loss / double(r.count);
  r.accuracy = double(correct) / double(r.count);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

StepStats train_batch(Experiment& x, int64_t epoch, int64_t batch, int64_t batches, double lr, const torch::Tensor& xb,
                      const torch::Tensor& yb, const std::function<void(const StepStats&)>& before_step) {
  const auto& cfg = x.cfg;
  const QuantClock clock{uint64_t(cfg.seed), epoch, batch, batches, cfg.train.epochs, lr};
  x.optimizer.impl->zero_grad();
  x.rule->begin_batch(cfg.seed, epoch, batch);
  if (x.quant) x.quant->begin_batch(clock);
  StepStats s = x.rule->train_step(x.net, xb, yb);
  if (before_step) before_step(s);
  if (x.quant) x.quant->after_backward(clock);
  x.optimizer.impl->step();
  if (x.quant) x.quant->after_step(clock);
  return s;
}

Trainer::Trainer(Experiment& experiment, RunDir run) : x_(experiment), run_(std::move(run)) {}

std::vector<std::string> Trainer::columns() const {
  std::vector<std::string> c{"epoch", "train_loss", "train_accuracy"};
  if (x_.data.validation.size() > 0) c.insert(c.end(), {"val_loss", "val_accuracy"});
  c.insert(c.end(), {"test_loss", "test_accuracy", "lr"});
  for (const auto& d : x_.rule->diagnostic_columns()) c.push_back(d);
  if (x_.quant)
    for (const auto& d : x_.quant->columns()) c.push_back(d);
  if (x_.probe_reference)
    for (const auto& d : alignment_columns(x_.net->num_layers())) c.push_back(d);
  c.push_back("epoch_seconds");
  return c;
}

std::vector<double> Trainer::run_probe(int64_t epoch) {
  const auto& cfg = x_.cfg;
  const int64_t every = cfg.get<int64_t>("train.probe_every");
  const size_t columns = alignment_columns(x_.net->num_layers()).size();
  if ((epoch + 1) % every != 0) return std::vector<double>(columns, std::nan(""));
  const int64_t n = std::min<int64_t>(cfg.get<int64_t>("train.probe_size"), x_.data.train.size());
  const Dataset batch = x_.data.train.slice(0, n);
  auto xb = batch.images.to(x_.device), yb = batch.labels.to(x_.device);
  x_.rule->begin_batch(cfg.seed, epoch, -1);
  x_.probe_reference->begin_batch(cfg.seed, epoch, -1);
  const Alignment a = compare_gradients(layer_gradients(*x_.rule, x_.net, xb, yb),
                                        layer_gradients(*x_.probe_reference, x_.net, xb, yb));
  spdlog::info("epoch {} gradient probe vs {}: cosine {:.4f}, relative error {:.4f}", epoch + 1,
               x_.probe_reference->name(), a.overall.cosine, a.overall.relative_error);
  return alignment_values(a);
}

TrainProgress Trainer::run(TrainProgress progress) {
  const auto& cfg = x_.cfg;
  MetricsWriter metrics(run_.metrics(), columns(), progress.epoch);
  const bool tty = Progress::stderr_is_tty();
  const auto diag_names = x_.rule->diagnostic_columns();
  const int64_t epochs = cfg.train.epochs;
  NonfiniteGuard nonfinite(cfg);  // train.on_nonfinite

  for (int64_t epoch = progress.epoch; epoch < epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = apply_schedule(x_.optimizer, cfg.scheduler, epoch, epochs);
    x_.net->train();
    Batches batches(x_.data.train, cfg.train.batch_size, true, cfg.seed, epoch);
    Progress bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs), batches.count(),
                 x_.data.train.size(), tty, cfg.log_every);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    std::vector<double> diag_sums(diag_names.size(), 0.0);
    if (x_.quant) x_.quant->begin_epoch();
    for (int64_t b = 0; b < batches.count(); ++b) {
      if (stop_requested()) return progress;
      crash_point("batch", std::to_string(epoch + 1) + "." + std::to_string(b));
      auto [xb, yb] = batches.get(b);
      xb = xb.to(x_.device), yb = yb.to(x_.device);
      // stop: throws DivergedError before the optimizer step; warn: logs
      StepStats s = train_batch(x_, epoch, b, batches.count(), lr, xb, yb,
                                [&](const StepStats& st) { nonfinite.check(st, x_.net, epoch, b); });
      loss_sum += s.loss_sum;
      correct += s.correct;
      seen += xb.size(0);
      for (size_t i = 0; i < diag_names.size(); ++i) {
        auto it = s.diagnostics.find(diag_names[i]);
        if (it != s.diagnostics.end()) diag_sums[i] += it->second;
      }
      bar.update(b + 1, seen, loss_sum / double(seen), double(correct) / double(seen));
    }
    bar.finish();
    if (!std::isfinite(loss_sum))
      spdlog::warn("epoch {}: the training loss is not finite; check the learning rate", epoch + 1);

    std::vector<double> probe;
    if (x_.probe_reference) probe = run_probe(epoch);

    x_.net->eval();
    const EvalResult val = evaluate(*x_.rule, x_.net, x_.data.validation, cfg.train.eval_batch_size, x_.device);
    const EvalResult test = evaluate(*x_.rule, x_.net, x_.data.test, cfg.train.eval_batch_size, x_.device);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::vector<double> row{double(epoch + 1), loss_sum / double(seen), double(correct) / double(seen)};
    if (x_.data.validation.size() > 0) row.insert(row.end(), {val.loss, val.accuracy});
    row.insert(row.end(), {test.loss, test.accuracy, lr});
    for (double d : diag_sums) row.push_back(d / double(batches.count()));
    if (x_.quant)
      for (double v : x_.quant->epoch_values(QuantClock{uint64_t(cfg.seed), epoch, 0, batches.count(), epochs, lr}))
        row.push_back(v);
    row.insert(row.end(), probe.begin(), probe.end());
    row.push_back(seconds);
    metrics.append(row);
    check_log_file();  // a failed write to train.log ends the run like any other write failure

    progress.epoch = epoch + 1;
    if (val.count > 0 && val.accuracy > progress.best_val_accuracy) {
      progress.best_val_accuracy = val.accuracy;
      progress.best_epoch = epoch + 1;
      progress.best_test_accuracy = test.accuracy;
      save_model(run_.best_model(), *x_.net);
    }
    if (val.count > 0)
      spdlog::info("epoch {}/{}  train loss {:.4f} acc {:.4f} | val loss {:.4f} acc {:.4f} | test loss {:.4f} acc "
                   "{:.4f} | {:.1f}s",
                   epoch + 1, epochs, row[1], row[2], val.loss, val.accuracy, test.loss, test.accuracy, seconds);
    else
      spdlog::info("epoch {}/{}  train loss {:.4f} acc {:.4f} | test loss {:.4f} acc {:.4f} | {:.1f}s", epoch + 1,
                   epochs, row[1], row[2], test.loss, test.accuracy, seconds);
    for (size_t i = 0; i < diag_names.size(); ++i)
      spdlog::debug("epoch {} {} = {}", epoch + 1, diag_names[i], diag_sums[i] / double(batches.count()));

    crash_point("epoch_end", std::to_string(epoch + 1));
    if ((epoch + 1) % cfg.checkpoint_every == 0 || epoch + 1 == epochs) {
      save_checkpoint(checkpoint_path(run_.checkpoints(), epoch + 1), *x_.net, *x_.optimizer.impl, progress,
                      cfg.hash());
      spdlog::debug("checkpoint written for epoch {}", epoch + 1);
    }
  }
  return progress;
}

}  // namespace bilevel
