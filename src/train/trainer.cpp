#include "bilevel/train/trainer.h"

#include <ATen/record_function.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>

#include "bilevel/data/batches.h"
#include "bilevel/dist/data_parallel.h"
#include "bilevel/run/metrics.h"
#include "bilevel/run/preemption.h"
#include "bilevel/train/divergence.h"
#include "bilevel/train/probe.h"
#include "bilevel/util/crash_points.h"
#include "bilevel/util/log.h"
#include "bilevel/util/progress.h"

namespace bilevel {

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

namespace {
// A warning's text without its figures: the same warning in a later epoch has the same key.
std::string without_digits(const std::string& s) {
  std::string out;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) out += c;
  return out;
}

unsigned local_stop_flags() {
  return (stop_requested() ? kStopInterrupt : 0u) | (preempt_requested() ? kStopPreempt : 0u);
}
}  // namespace

StepStats train_batch(Experiment& x, int64_t epoch, int64_t batch, int64_t batches, double lr, const torch::Tensor& xb,
                      const torch::Tensor& yb, const std::function<void(const StepStats&)>& before_step) {
  const auto& cfg = x.cfg;
  const QuantClock clock{uint64_t(cfg.seed), epoch, batch, batches, cfg.train.epochs, lr};
  x.optimizer.impl->zero_grad();
  x.rule->begin_batch(cfg.seed, epoch, batch);
  if (x.quant) x.quant->begin_batch(clock);
  StepStats s;
  {
    RECORD_FUNCTION("train.rule_step", std::vector<c10::IValue>());
    s = x.rule->train_step(x.net, xb, yb);
  }
  // Data parallelism: every rank steps with the gradient of the global batch (and learns whether any rank was
  // asked to stop).
  if (x.dist) x.dist->average_gradients(x.net->parameters(), local_stop_flags());
  if (before_step) before_step(s.resolve());  // the check reads the loss; without one, it is read after the step
  {
    RECORD_FUNCTION("train.optimizer_step", std::vector<c10::IValue>());  // a scope for bench_epoch --profile
    if (x.quant) x.quant->after_backward(clock);
    x.optimizer.impl->step();
    if (x.quant) x.quant->after_step(clock);
  }
  s.resolve();
  return s;
}

Trainer::Trainer(Experiment& experiment, RunDir run)
    : x_(experiment), run_(std::move(run)), writer_(!experiment.dist || experiment.dist->rank() == 0) {}

unsigned Trainer::stop_flags(bool collective) {
  if (!x_.dist) return local_stop_flags();
  return collective ? x_.dist->agree(local_stop_flags()) : x_.dist->agreed_flags();
}

EpochPosition Trainer::reduced(const EpochPosition& local) {
  if (!x_.dist) return local;
  std::vector<double> v{local.loss_sum, double(local.correct), double(local.seen)};
  v.insert(v.end(), local.diagnostic_sums.begin(), local.diagnostic_sums.end());
  x_.dist->allreduce_sum(v);
  EpochPosition g = local;
  g.loss_sum = v[0];
  g.correct = int64_t(std::llround(v[1]));
  g.seen = int64_t(std::llround(v[2]));
  // Diagnostics are per-batch statistics of each rank's shard: their mean over the ranks.
  for (size_t i = 0; i < g.diagnostic_sums.size(); ++i) g.diagnostic_sums[i] = v[3 + i] / double(x_.dist->size());
  return g;
}

EvalResult Trainer::evaluate_split(const Dataset& data) {
  const int64_t eval_batch = x_.cfg.train.eval_batch_size;
  if (!x_.dist) return evaluate(*x_.rule, x_.net, data, eval_batch, x_.device);
  const int64_t n = data.size(), w = x_.dist->size(), r = x_.dist->rank();
  const EvalResult part = evaluate(*x_.rule, x_.net, data.slice(r * n / w, (r + 1) * n / w), eval_batch, x_.device);
  std::vector<double> v{part.loss * double(part.count), std::round(part.accuracy * double(part.count)),
                        double(part.count)};
  x_.dist->allreduce_sum(v);
  EvalResult all;
  all.count = int64_t(std::llround(v[2]));
  all.loss = all.count > 0 ? v[0] / v[2] : 0.0;
  all.accuracy = all.count > 0 ? v[1] / v[2] : 0.0;
  all.seconds = part.seconds;
  return all;
}

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
  std::vector<torch::Tensor> estimate = layer_gradients(*x_.rule, x_.net, xb, yb),
                             reference = layer_gradients(*x_.probe_reference, x_.net, xb, yb);
  std::string against = x_.probe_reference->name();
  if (x_.probe_solver && x_.quant) {
    // The clock at the end of this epoch (an annealed solver's schedule reads it).
    const int64_t batches = (x_.data.train.size() + cfg.train.batch_size - 1) / cfg.train.batch_size;
    const QuantClock clock{uint64_t(cfg.seed), epoch, batches - 1, batches, cfg.train.epochs, cfg.optimizer.lr};
    estimate = latent_layer_gradients(*x_.net, *x_.quant, x_.quant->weight_solver(), estimate, clock);
    reference = latent_layer_gradients(*x_.net, *x_.quant, *x_.probe_solver, reference, clock);
    against += " through " + x_.probe_solver->name() + "'s backward";
  }
  const Alignment a = compare_gradients(estimate, reference);
  spdlog::info("epoch {} gradient probe vs {}: cosine {:.4f}, relative error {:.4f}", epoch + 1, against,
               a.overall.cosine, a.overall.relative_error);
  return alignment_values(a);
}

void Trainer::save_position(TrainProgress progress) {
  progress.position = reduced(progress.position);  // every rank takes part; rank 0 writes
  if (!writer_) return;
  if (x_.quant) progress.position.quant_codes = x_.quant->epoch_codes();
  const auto file = checkpoint_path(run_.checkpoints(), progress.epoch, progress.position.batch);
  save_checkpoint(file, *x_.net, *x_.optimizer.impl, progress, x_.cfg.hash());
  remove_older_positional_checkpoints(run_.checkpoints(), file);
  spdlog::info("checkpoint written inside epoch {} after batch {}: {}", progress.epoch + 1, progress.position.batch,
               file.filename().string());
}

TrainProgress Trainer::run(TrainProgress progress) {
  const auto& cfg = x_.cfg;
  std::optional<MetricsWriter> metrics;
  if (writer_) metrics.emplace(run_.metrics(), columns(), progress.epoch);
  const int64_t world = x_.dist ? x_.dist->size() : 1, rank = x_.dist ? x_.dist->rank() : 0;
  // Rank 0 alone continues the running sums a positional checkpoint restored; the others start theirs at 0.
  if (rank != 0) {
    EpochPosition& p = progress.position;
    p.loss_sum = 0, p.correct = 0, p.seen = 0;
    std::fill(p.diagnostic_sums.begin(), p.diagnostic_sums.end(), 0.0);
  }
  const bool tty = Progress::stderr_is_tty();
  const auto diag_names = x_.rule->diagnostic_columns();
  const int64_t epochs = cfg.train.epochs;
  NonfiniteGuard nonfinite(cfg);  // train.on_nonfinite
  const int64_t every_batches = cfg.get<int64_t>("checkpoint.every_batches");

  for (int64_t epoch = progress.epoch; epoch < epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = apply_schedule(x_.optimizer, cfg.scheduler, epoch, epochs);
    x_.net->train();
    const Batches batches = world == 1 ? Batches(x_.data.train, cfg.train.batch_size, true, cfg.seed, epoch)
                                       : Batches(x_.data.train, cfg.train.batch_size / world, cfg.seed, epoch, rank,
                                                 world);
    Progress bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs), batches.count(),
                 x_.data.train.size(), tty, cfg.log_every);
    // Where this epoch starts: at its beginning, or where a positional checkpoint left it.
    EpochPosition pos = std::move(progress.position);
    progress.position = EpochPosition{};
    if (pos.diagnostic_sums.size() != diag_names.size()) pos.diagnostic_sums.assign(diag_names.size(), 0.0);
    if (x_.quant) {
      if (pos.batch > 0) x_.quant->set_epoch_codes(pos.quant_codes);
      else x_.quant->begin_epoch();
    }
    // Preemption: the position (batches done, running sums) goes into a positional checkpoint.
    auto preempt = [&] {
      TrainProgress at = progress;
      at.position = pos;
      save_position(at);
      preempted_ = true;
      return at;
    };
    for (int64_t b = pos.batch; b < batches.count(); ++b) {
      const unsigned flags = stop_flags(false);
      if (flags & kStopInterrupt) return progress;
      if (flags & kStopPreempt) return preempt();
      crash_point("batch", std::to_string(epoch + 1) + "." + std::to_string(b));
      auto [xb, yb] = batches.get(b);
      xb = xb.to(x_.device), yb = yb.to(x_.device);
      // stop: throws DivergedError before the optimizer step; warn: logs
      StepStats s = train_batch(x_, epoch, b, batches.count(), lr, xb, yb,
                                [&](const StepStats& st) { nonfinite.check(st, x_.net, epoch, b); });
      pos.loss_sum += s.loss_sum;
      pos.correct += s.correct;
      pos.seen += xb.size(0);
      for (size_t i = 0; i < diag_names.size(); ++i) {
        auto it = s.diagnostics.find(diag_names[i]);
        if (it != s.diagnostics.end()) pos.diagnostic_sums[i] += it->second;
      }
      pos.batch = b + 1;
      bar.update(b + 1, pos.seen, pos.loss_sum / double(pos.seen), double(pos.correct) / double(pos.seen));
      if (every_batches > 0 && pos.batch % every_batches == 0 && pos.batch < batches.count()) {  // on every rank
        TrainProgress at = progress;
        at.position = pos;
        save_position(at);
      }
    }
    // A preemption during the last batch: checkpoint before the evaluation, which may take a while.
    if (stop_flags(true) & kStopPreempt) return preempt();
    const EpochPosition sums = reduced(pos);
    const double loss_sum = sums.loss_sum;
    const int64_t correct = sums.correct, seen = sums.seen;
    std::vector<double> diag_means;  // each diagnostic's mean over the epoch's batches
    for (double d : sums.diagnostic_sums) diag_means.push_back(d / double(batches.count()));
    bar.finish();
    if (!std::isfinite(loss_sum))
      spdlog::warn("epoch {}: the training loss is not finite; check the learning rate", epoch + 1);

    std::vector<double> probe;
    if (x_.probe_reference) probe = run_probe(epoch);

    x_.net->eval();
    const EvalResult val = evaluate_split(x_.data.validation);
    const EvalResult test = evaluate_split(x_.data.test);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::vector<double> row{double(epoch + 1), loss_sum / double(seen), double(correct) / double(seen)};
    if (x_.data.validation.size() > 0) row.insert(row.end(), {val.loss, val.accuracy});
    row.insert(row.end(), {test.loss, test.accuracy, lr});
    row.insert(row.end(), diag_means.begin(), diag_means.end());
    if (x_.quant)
      for (double v : x_.quant->epoch_values(QuantClock{uint64_t(cfg.seed), epoch, 0, batches.count(), epochs, lr}))
        row.push_back(v);
    row.insert(row.end(), probe.begin(), probe.end());
    row.push_back(seconds);
    if (writer_) {
      metrics->append(row);
      check_log_file();  // a failed write to train.log ends the run like any other write failure
    }

    progress.epoch = epoch + 1;
    if (val.count > 0 && val.accuracy > progress.best_val_accuracy) {
      progress.best_val_accuracy = val.accuracy;
      progress.best_epoch = epoch + 1;
      progress.best_test_accuracy = test.accuracy;
      if (writer_) save_model(run_.best_model(), *x_.net);
    }
    if (val.count > 0)
      spdlog::info("epoch {}/{}  train loss {:.4f} acc {:.4f} | val loss {:.4f} acc {:.4f} | test loss {:.4f} acc "
                   "{:.4f} | {:.1f}s",
                   epoch + 1, epochs, row[1], row[2], val.loss, val.accuracy, test.loss, test.accuracy, seconds);
    else
      spdlog::info("epoch {}/{}  train loss {:.4f} acc {:.4f} | test loss {:.4f} acc {:.4f} | {:.1f}s", epoch + 1,
                   epochs, row[1], row[2], test.loss, test.accuracy, seconds);
    for (size_t i = 0; i < diag_names.size(); ++i)
      spdlog::debug("epoch {} {} = {}", epoch + 1, diag_names[i], diag_means[i]);
    if (writer_)
      for (const auto& w : x_.rule->epoch_warnings(diag_means))
        if (warned_.insert(without_digits(w)).second) spdlog::warn("epoch {}: {}", epoch + 1, w);

    crash_point("epoch_end", std::to_string(epoch + 1));
    if (writer_ && ((epoch + 1) % cfg.checkpoint_every == 0 || epoch + 1 == epochs)) {
      const auto file = checkpoint_path(run_.checkpoints(), epoch + 1);
      save_checkpoint(file, *x_.net, *x_.optimizer.impl, progress, cfg.hash());
      remove_older_positional_checkpoints(run_.checkpoints(), file);
      spdlog::debug("checkpoint written for epoch {}", epoch + 1);
    }
  }
  return progress;
}

}  // namespace bilevel
