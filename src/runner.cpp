#include "bilevel/runner.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <ctime>

#include "bilevel/data/batches.h"
#include "bilevel/dist/data_parallel.h"
#include "bilevel/dist/world.h"
#include "bilevel/run/build_info.h"
#include "bilevel/util/clock.h"
#include "bilevel/util/crash_points.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/run/dir_lock.h"
#include "bilevel/run/environment.h"
#include "bilevel/run/preemption.h"
#include "bilevel/train/divergence.h"
#include "bilevel/util/atomic_file.h"
#include "bilevel/util/io_error.h"
#include "bilevel/util/log.h"

namespace bilevel {
namespace fs = std::filesystem;

namespace {

std::string hostname() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

void write_yaml(const fs::path& path, const YAML::Node& node) {
  YAML::Emitter e;
  e << node;
  write_file_atomic(path, std::string(e.c_str()) + "\n");
}

// Writes meta.yaml after a failure. When even that fails (the disk that failed the run is still full), the run's
// own error is what matters: it is reported, with a note that meta.yaml still says `running`.
void record_failure(const RunDir& dir, YAML::Node meta, const std::exception& e) {
  meta["status"] = "failed";
  meta["error"] = e.what();
  meta["end_time"] = now_iso();
  try {
    write_yaml(dir.meta(), meta);
  } catch (const IoError& m) {
    if (const auto* io = dynamic_cast<const IoError*>(&e))
      throw IoError(io->file(), io->action(), io->reason() + " (" + dir.meta().filename().string() +
                                                  " could not be updated either: " + m.reason() + ")");
    throw;
  }
}

// A rank other than 0 of a data-parallel run: trains in step with the others and writes nothing.
RunOutcome train_as_helper(Experiment& x, TrainProgress start) {
  RunOutcome out{RunDir{}, "failed", start};
  try {
    Trainer trainer(x, RunDir{});
    out.progress = trainer.run(start);
    out.status = out.progress.epoch >= x.cfg.train.epochs ? "completed"
                 : trainer.preempted()                     ? "preempted"
                                                           : "interrupted";
  } catch (const DivergedError& d) {
    out.status = "diverged";
  }
  return out;
}

// Data parallelism: every rank starts from rank 0's state (model, quantization state, optimizer, progress).
// Returns false on the other ranks when rank 0 has nothing to train (`bytes` empty).
bool share_start(Experiment& x, TrainProgress& start, bool train) {
  if (!x.dist) return train;
  std::string bytes;
  if (x.dist->rank() == 0 && train) bytes = checkpoint_bytes(*x.net, *x.optimizer.impl, start, x.cfg.hash());
  x.dist->broadcast_bytes(bytes);
  if (bytes.empty()) return false;
  if (x.dist->rank() != 0) start = load_checkpoint_bytes(bytes, *x.net, *x.optimizer.impl, x.cfg.hash());
  return true;
}

// Joins the other ranks when a launcher started this process as one of several (dist/world.h). Everything that
// can fail on input (the config against the world size, the rendezvous, the config hash) fails here, before
// rank 0 writes anything.
void join_world(Experiment& x) {
  const auto world = detect_world();
  if (!world) return;
  x.dist = DataParallel::join(*world, x.cfg, x.net->parameters());
  if (world->rank != 0) spdlog::set_level(spdlog::level::warn);  // rank 0 reports for all
}

void check_world(const ExperimentConfig& cfg) {
  if (const auto world = detect_world()) validate_world(cfg, world->size);
}

// meta.yaml's `distributed:` (a run's start) or a resume entry's (each resume may use another world size).
void record_world(YAML::Node meta, const Experiment& x) {
  if (!x.dist) return;
  const World& w = x.dist->world();
  YAML::Node d;
  d["world_size"] = w.size;
  d["backend"] = x.dist->backend();
  d["gradient_allreduce"] = x.dist->gradient_transport();
  d["launcher"] = w.launcher;
  d["master"] = w.master_addr + ":" + std::to_string(w.master_port);
  d["hosts"] = YAML::Node(YAML::NodeType::Sequence);
  for (const auto& h : x.dist->hosts()) d["hosts"].push_back(h);
  d["per_rank_batch_size"] = x.cfg.train.batch_size / w.size;
  meta["distributed"] = d;
}

// Trains and keeps meta.yaml's status true whatever happens.
RunOutcome train_and_record(Experiment& x, const RunDir& dir, YAML::Node meta, TrainProgress start) {
  RunOutcome out{dir, "failed", start};
  try {
    Trainer trainer(x, dir);
    out.progress = trainer.run(start);
    out.status = out.progress.epoch >= x.cfg.train.epochs ? "completed"
                 : trainer.preempted()                     ? "preempted"
                                                           : "interrupted";
    if (out.status == "completed") save_model(dir.final_model(), *x.net);
    check_log_file();
  } catch (const DivergedError& d) {
    // train.on_nonfinite=stop: the run ends here; its last checkpoint, best model and metrics rows are the last
    // good epoch's.
    out.status = "diverged";
    meta["status"] = "diverged";
    meta["error"] = d.what();
    meta["diverged_at"]["epoch"] = d.epoch();
    meta["diverged_at"]["batch"] = d.batch();
    meta["end_time"] = now_iso();
    write_yaml(dir.meta(), meta);
    spdlog::error("{}; the run stopped (train.on_nonfinite=stop) and keeps what epoch {} left", d.what(),
                  d.epoch() - 1);
    return out;
  } catch (const std::exception& e) {
    record_failure(dir, meta, e);
    throw;
  }
  meta["status"] = out.status;
  meta["end_time"] = now_iso();
  meta["epochs_completed"] = out.progress.epoch;
  if (out.progress.best_epoch > 0) {
    meta["model_selection"]["criterion"] = "validation accuracy";
    meta["model_selection"]["best_epoch"] = out.progress.best_epoch;
    meta["model_selection"]["best_val_accuracy"] = out.progress.best_val_accuracy;
    meta["model_selection"]["test_accuracy_at_best_epoch"] = out.progress.best_test_accuracy;
  }
  if (out.status == "preempted") {
    meta["preempted_at"]["epoch"] = out.progress.epoch + 1;
    meta["preempted_at"]["batch"] = out.progress.position.batch;
    meta["preempted_at"]["signal"] = signal_name(StopSignals::received());
    // Requeue only on the preemption signal: SIGTERM is also what `scancel` sends.
    const std::string job = slurm_job_to_requeue();
    if (!job.empty() && StopSignals::received() != SIGTERM) {
      const std::string requeue = slurm_requeue(job);
      meta["preempted_at"]["requeue"] = requeue;
      spdlog::info("{}", requeue);
    }
  }
  write_yaml(dir.meta(), meta);
  if (out.status == "preempted")
    spdlog::warn("preempted ({}) in epoch {} after batch {}; a checkpoint holds the position; continue with: "
                 "bilevel resume {}",
                 signal_name(StopSignals::received()), out.progress.epoch + 1, out.progress.position.batch,
                 dir.root.string());
  else if (out.status == "interrupted")
    spdlog::warn("interrupted after epoch {}; continue with: bilevel resume {}", out.progress.epoch,
                 dir.root.string());
  else
    spdlog::info("done: {}", dir.root.string());
  return out;
}

// Renames a checkpoint that resume will not use, so a later resume does not pick it up: FILE -> FILE.SUFFIX.
void set_aside(const fs::path& file, const std::string& suffix) {
  fs::path target = file;
  target += "." + suffix;
  std::error_code ec;
  fs::rename(file, target, ec);
  if (ec) throw IoError(file, "cannot rename", ec.value());
}

// The checkpoint to resume from: `explicit_file` when given, else the newest that loads and matches the config.
// Loads it into x. Returns its progress (epoch 0 when the run has no checkpoint yet).
TrainProgress load_resume_point(Experiment& x, const RunDir& dir, const ExperimentConfig& cfg,
                                const fs::path& explicit_file) {
  const auto all = checkpoints_newest_first(dir.checkpoints());
  if (!explicit_file.empty()) {
    const fs::path file = run_checkpoint(dir, explicit_file.string());
    const TrainProgress p = load_checkpoint(file, *x.net, *x.optimizer.impl, cfg.hash());
    spdlog::info("resuming {} from {} (epoch {}, batch {}, as asked)", dir.root.string(), file.string(), p.epoch,
                 p.position.batch);
    // Later checkpoints belong to a history this resume replaces.
    const fs::path chosen = p.position.batch > 0 ? checkpoint_path("", p.epoch, p.position.batch)
                                                  : checkpoint_path("", p.epoch);
    for (const auto& c : all)
      if (fs::exists(c) && !fs::equivalent(c, file) && c.filename() > chosen.filename()) {
        spdlog::warn("setting aside {} (after the chosen checkpoint) as {}.superseded", c.filename().string(),
                     c.filename().string());
        set_aside(c, "superseded");
      }
    return p;
  }
  std::vector<std::string> reasons;
  std::vector<fs::path> skipped;
  for (const auto& c : all) {
    try {
      const TrainProgress p = load_checkpoint(c, *x.net, *x.optimizer.impl, cfg.hash());
      spdlog::info("resuming {} from {} (epoch {}, batch {})", dir.root.string(), c.filename().string(), p.epoch,
                   p.position.batch);
      for (const auto& s : skipped) set_aside(s, "skipped");
      return p;
    } catch (const UserError& e) {
      spdlog::warn("skipping checkpoint {}", e.what());
      reasons.push_back(e.what());
      skipped.push_back(c);
      auto dist = x.dist;
      x = prepare(cfg);  // a failed load may have overwritten part of the model or optimizer
      x.dist = dist;
    }
  }
  if (!all.empty()) {
    std::string why;
    for (const auto& r : reasons) why += "\n  " + r;
    throw UserError(dir.root.string() + ": no checkpoint can be resumed from:" + why);
  }
  spdlog::info("resuming {}: no checkpoint yet, starting from epoch 0", dir.root.string());
  return TrainProgress{};
}

}  // namespace

ExperimentConfig run_config(const RunDir& dir) { return load_config(dir.config().string()); }

// The stop signals' handlers (run/preemption.h), from before the data is loaded: a preemption that arrives during
// start-up is honoured at the first batch rather than killing the process.
static int preempt_signal_of(const ExperimentConfig& cfg) {
  return preempt_signal_number(cfg.get<std::string>("train.preempt_signal"));
}

RunOutcome start_run(const ExperimentConfig& cfg, const std::string& command_line,
                     const std::function<void(const RunDir&)>& on_created) {
  StopSignals signals(preempt_signal_of(cfg));
  crash_point("start", "train");
  check_world(cfg);
  Experiment x = prepare(cfg);  // every user-input check happens here, before anything is written
  join_world(x);
  TrainProgress start;
  share_start(x, start, true);
  if (x.dist && x.dist->rank() != 0) return train_as_helper(x, start);
  RunDir dir = RunDir::create(cfg.output_root, cfg.name);
  const DirLock lock = DirLock::acquire(dir.root);  // held until the run ends: a resume of it meanwhile is refused
  write_file_atomic(dir.config(), cfg.to_yaml());
  attach_log_file(dir.log());
  YAML::Node meta;
  meta["command_line"] = command_line;
  meta["config_file"] = cfg.source_file;
  meta["overrides"] = YAML::Node(YAML::NodeType::Sequence);
  for (const auto& o : cfg.overrides) meta["overrides"].push_back(o);
  meta["config_hash"] = cfg.hash();
  meta["git_commit"] = build_info().git_commit;
  meta["git_dirty"] = build_info().git_dirty;
  meta["host"] = hostname();
  meta["start_time"] = now_iso();
  meta["status"] = "running";
  meta["seed"] = cfg.seed;
  meta["device"] = x.device.str();
  record_world(meta, x);
  meta["environment"] = environment_yaml(collect_environment());
  write_yaml(dir.meta(), meta);
  spdlog::info("run directory: {}", dir.root.string());
  spdlog::info("{} on {} ({} train / {} validation / {} test examples), {} epochs", cfg.rule.name,
               cfg.data.name, x.data.train.size(), x.data.validation.size(), x.data.test.size(), cfg.train.epochs);
  if (on_created) on_created(dir);
  return train_and_record(x, dir, meta, start);
}

RunOutcome resume_run(const fs::path& path, const std::string& command_line, const fs::path& checkpoint) {
  RunDir dir = RunDir::open(path);
  const auto world = detect_world();
  if (world && world->rank != 0) {
    // Another rank of a data-parallel resume: the run's config, then rank 0's state.
    ExperimentConfig cfg = run_config(dir);
    StopSignals signals(preempt_signal_of(cfg));
    validate_world(cfg, world->size);
    Experiment x = prepare(cfg);
    join_world(x);
    TrainProgress start;
    if (!share_start(x, start, false)) return RunOutcome{RunDir{}, "completed", start};  // rank 0 prints
    return train_as_helper(x, start);
  }
  const DirLock lock = DirLock::acquire(dir.root);  // before anything is read: a second process fails at once
  ExperimentConfig cfg = run_config(dir);
  StopSignals signals(preempt_signal_of(cfg));
  check_world(cfg);
  Experiment x = prepare(cfg);
  join_world(x);
  YAML::Node meta = fs::exists(dir.meta()) ? YAML::LoadFile(dir.meta().string()) : YAML::Node();
  TrainProgress start = load_resume_point(x, dir, cfg, checkpoint);
  if (checkpoint.empty() && start.epoch >= cfg.train.epochs && fs::exists(dir.final_model())) {
    spdlog::info("{} already completed {} epochs; nothing to do", dir.root.string(), start.epoch);
    share_start(x, start, false);
    return RunOutcome{dir, "completed", start};
  }
  share_start(x, start, true);
  fs::create_directories(dir.checkpoints());  // when it vanished, training writes it anew
  // Stale temporary files from a write that was cut short are never read; remove them.
  for (const auto& sub : {dir.root, dir.checkpoints()})
    for (const auto& e : fs::directory_iterator(sub))
      if (e.path().extension() == ".tmp") fs::remove(e.path());
  attach_log_file(dir.log());
  YAML::Node resume_entry;
  resume_entry["time"] = now_iso();
  resume_entry["from_epoch"] = start.epoch;
  if (start.position.batch > 0) resume_entry["from_batch"] = start.position.batch;
  resume_entry["command_line"] = command_line;
  resume_entry["git_commit"] = build_info().git_commit;
  record_world(resume_entry, x);
  meta["resumes"].push_back(resume_entry);
  meta["status"] = "running";
  meta.remove("end_time");
  meta.remove("error");
  meta.remove("diverged_at");
  meta.remove("preempted_at");
  write_yaml(dir.meta(), meta);
  return train_and_record(x, dir, meta, start);
}

fs::path run_checkpoint(const RunDir& dir, const std::string& which) {
  if (which == "best") {
    if (!fs::exists(dir.best_model()))
      throw UserError(dir.best_model().string() + ": no best model (the run had no validation split?)");
    return dir.best_model();
  }
  if (which.empty() || which == "final") {
    if (fs::exists(dir.final_model())) return dir.final_model();
    if (which == "final") throw UserError(dir.final_model().string() + ": the run has not finished (no final.pt)");
    if (auto c = latest_checkpoint(dir.checkpoints())) return *c;
    throw UserError(dir.root.string() + ": no final.pt and no checkpoint");
  }
  for (const fs::path& file : {fs::path(which), dir.checkpoints() / which, dir.root / which})
    if (fs::is_regular_file(file)) return file;
  throw UserError(which + ": no such checkpoint (neither a file nor a name in " + dir.checkpoints().string() + ")");
}

Experiment load_run(const fs::path& path, const std::string& checkpoint, fs::path* used) {
  RunDir dir = RunDir::open(path);
  ExperimentConfig cfg = run_config(dir);
  const fs::path file = run_checkpoint(dir, checkpoint);
  Experiment x = prepare(cfg);
  load_model(file, *x.net);
  x.net->eval();
  if (used) *used = file;
  return x;
}

EvalResult eval_run(const fs::path& path, const std::string& checkpoint) {
  fs::path file;
  Experiment x = load_run(path, checkpoint, &file);
  spdlog::info("evaluating {} on {} test examples", file.string(), x.data.test.size());
  return evaluate(*x.rule, x.net, x.data.test, x.cfg.train.eval_batch_size, x.device);
}

}  // namespace bilevel
