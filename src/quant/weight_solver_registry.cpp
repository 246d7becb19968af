#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

namespace {
struct SolverEntry {
  const char* name;
  std::unique_ptr<WeightSolver> (*make)(const ExperimentConfig&);
};
const SolverEntry kSolvers[] = {
    {"ste", make_ste_solver},           {"adaste", make_adaste_solver}, {"proxquant", make_proxquant_solver},
    {"mirror", make_mirror_solver},     {"lsq", make_lsq_solver},       {"flip", make_flip_solver},
};
}  // namespace

std::vector<std::string> weight_solver_names() {
  std::vector<std::string> out;
  for (const auto& e : kSolvers) out.push_back(e.name);
  return out;
}

std::unique_ptr<WeightSolver> make_weight_solver(const std::string& name, const ExperimentConfig& cfg,
                                                 const std::string& key) {
  for (const auto& e : kSolvers)
    if (name == e.name) return e.make(cfg);
  std::string names;
  for (const auto& n : weight_solver_names()) names += (names.empty() ? "" : ", ") + n;
  cfg.fail(key, "unknown quantization solver '" + name + "' (expected one of: " + names + ")");
}

}  // namespace bilevel
