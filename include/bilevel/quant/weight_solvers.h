// The built-in quantization solvers' factories (one file each in src/quant/), collected by make_weight_solver().
#pragma once

#include "bilevel/quant/weight_solver.h"

namespace bilevel {

std::unique_ptr<WeightSolver> make_ste_solver(const ExperimentConfig& cfg);
std::unique_ptr<WeightSolver> make_adaste_solver(const ExperimentConfig& cfg);
std::unique_ptr<WeightSolver> make_proxquant_solver(const ExperimentConfig& cfg);
std::unique_ptr<WeightSolver> make_mirror_solver(const ExperimentConfig& cfg);
std::unique_ptr<WeightSolver> make_lsq_solver(const ExperimentConfig& cfg);
std::unique_ptr<WeightSolver> make_flip_solver(const ExperimentConfig& cfg);

}  // namespace bilevel
