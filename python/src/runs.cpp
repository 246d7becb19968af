// Runs from Python: the same functions the `bilevel` command calls (bilevel/runner.h), so a run started here
// gets the same run directory, config.yaml, metrics.csv and checkpoints as `bilevel train` with the same config.
// The GIL is released while a run trains (progress still goes to stderr, Ctrl-C still stops it after the batch).
#include <torch/python.h>

#include <pybind11/stl.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/runner.h"
#include "bilevel/util/log.h"
#include "bilevel/util/threads.h"
#include "bindings.h"
#include "runtime_guard.h"
#include "share_storage.h"
#include "yaml_to_python.h"

namespace bilevel::python {

namespace fs = std::filesystem;

namespace {

py::dict progress_dict(const TrainProgress& p) {
  py::dict d;
  d["epochs_completed"] = p.epoch;
  d["best_epoch"] = p.best_epoch;
  d["best_val_accuracy"] = p.best_val_accuracy;
  d["best_test_accuracy"] = p.best_test_accuracy;
  return d;
}

py::tuple outcome(const RunOutcome& out) {
  return py::make_tuple(out.dir.root.string(), out.status, progress_dict(out.progress));
}

py::dict eval_dict(const EvalResult& r) {
  py::dict d;
  d["loss"] = r.loss;
  d["accuracy"] = r.accuracy;
  d["count"] = r.count;
  d["examples_per_second"] = r.seconds > 0 ? double(r.count) / r.seconds : 0.0;
  return d;
}

// A finished run's network and rule with its trained weights, for bilevel.Model (python/bilevel/model.py).
class RunModel {
 public:
  RunModel(const std::string& dir, const std::string& checkpoint) {
    RuntimeGuard guard;
    fs::path used;
    x_ = load_run(dir, checkpoint, &used);
    checkpoint_ = used.string();
  }
  // The network's parameters and buffers by name: the tensors themselves (the same storage, no copy).
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (const auto& p : x_.net->named_parameters()) out.emplace_back(p.key(), p.value());
    return out;
  }
  // Points the network's parameter `name` at `t`'s storage (after a user moved or replaced the tensor).
  void bind(const std::string& name, const torch::Tensor& t) {
    auto* p = x_.net->named_parameters().find(name);
    if (!p) throw py::key_error("no parameter '" + name + "'");
    share_storage(*p, t);
  }
  // What the run's evaluation computes for x: the rule's prediction (the feedforward output, or the output at
  // the free equilibrium). Under autograd for feedforward rules (backprop's graph), without it otherwise.
  torch::Tensor predict(const torch::Tensor& x) {
    py::gil_scoped_release release;
    ScopedBlasThreads one_pool;
    return x_.rule->predict(x_.net, x);
  }
  py::dict evaluate(int64_t batch_size) {
    py::gil_scoped_release release;
    ScopedBlasThreads one_pool;
    const EvalResult r = bilevel::evaluate(*x_.rule, x_.net, x_.data.test,
                                           batch_size > 0 ? batch_size : x_.cfg.train.eval_batch_size, x_.device);
    py::gil_scoped_acquire acquire;
    return eval_dict(r);
  }
  py::tuple split(const std::string& name) const {
    if (name != "train" && name != "validation" && name != "test")
      throw py::value_error("split: expected train, validation or test, got '" + name + "'");
    const Dataset& d = name == "train" ? x_.data.train : name == "validation" ? x_.data.validation : x_.data.test;
    return py::make_tuple(d.images, d.labels);
  }
  std::string rule() const { return x_.rule->name(); }
  std::string checkpoint() const { return checkpoint_; }
  py::object config() const { return yaml_to_python(x_.cfg.tree); }
  bool quantized() const { return !x_.quant.is_empty(); }

 private:
  Experiment x_;
  std::string checkpoint_;
};

}  // namespace

void bind_runs(py::module_& m) {
  init_console_logging();
  m.def(
      "train",
      [](const std::string& config, const std::vector<std::string>& overrides, const std::string& command_line) {
        ExperimentConfig cfg = load_config(config, overrides);
        RunOutcome out;
        {
          RuntimeGuard guard;
          py::gil_scoped_release release;
          out = start_run(cfg, command_line);
        }
        return outcome(out);
      },
      py::arg("config"), py::arg("overrides"), py::arg("command_line"),
      "Starts a run (bilevel/runner.h start_run): (run directory, status, progress).");
  m.def(
      "resume",
      [](const std::string& dir, const std::string& checkpoint, const std::string& command_line) {
        RunOutcome out;
        {
          RuntimeGuard guard;
          py::gil_scoped_release release;
          out = resume_run(dir, command_line, checkpoint);
        }
        return outcome(out);
      },
      py::arg("dir"), py::arg("checkpoint"), py::arg("command_line"),
      "Resumes a run (resume_run): (run directory, status, progress).");
  m.def(
      "eval",
      [](const std::string& dir, const std::string& checkpoint) {
        EvalResult r;
        {
          RuntimeGuard guard;
          py::gil_scoped_release release;
          r = eval_run(dir, checkpoint);
        }
        return eval_dict(r);
      },
      py::arg("dir"), py::arg("checkpoint"), "Test loss and accuracy of a run (eval_run).");
  m.def(
      "resolve_config",
      [](const std::string& config, const std::vector<std::string>& overrides) {
        const ExperimentConfig cfg = load_config(config, overrides);
        return py::make_tuple(yaml_to_python(cfg.tree), cfg.to_yaml());
      },
      py::arg("config"), py::arg("overrides"),
      "The resolved config (defaults + file + overrides), validated: (dict, YAML text).");
  m.def(
      "run_config", [](const std::string& dir) { return yaml_to_python(run_config(RunDir::open(dir)).tree); },
      py::arg("dir"), "A run directory's config.yaml as a dict.");
  py::class_<RunModel>(m, "RunModel")
      .def(py::init<const std::string&, const std::string&>(), py::arg("dir"), py::arg("checkpoint"))
      .def("named_parameters", &RunModel::named_parameters)
      .def("bind", &RunModel::bind)
      .def("predict", &RunModel::predict)
      .def("evaluate", &RunModel::evaluate, py::arg("batch_size") = 0)
      .def("split", &RunModel::split)
      .def_property_readonly("rule", &RunModel::rule)
      .def_property_readonly("checkpoint", &RunModel::checkpoint)
      .def_property_readonly("config", &RunModel::config)
      .def_property_readonly("quantized", &RunModel::quantized);
}

}  // namespace bilevel::python
