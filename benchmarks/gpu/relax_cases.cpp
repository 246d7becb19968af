#include <algorithm>
#include <memory>

#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/fused_relaxation.h"
#include "bilevel/energy/layered_energy.h"
#include "bilevel/energy/neuron.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/nn/objective.h"
#include "kernel_cases.h"

namespace bilevel::gpu_bench {
namespace {

using torch::Tensor;

// The relaxation benchmark's network: 784-hidden-10, sigmoid4, output a state (mse), as configs/fmnist_mlp_ep.yaml.
struct RelaxProblem {
  LayeredNet net{nullptr};
  std::unique_ptr<Objective> obj;
  std::unique_ptr<LayeredEnergy> energy;
  EnergyBatch batch;
  EnergyState free_state;
};

std::shared_ptr<RelaxProblem> make_relax_problem(int64_t hidden, int64_t B, torch::Device dev, int64_t free_steps) {
  auto p = std::make_shared<RelaxProblem>();
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  ModelConfig m;
  m.kind = "mlp";
  m.activation = "sigmoid4";
  m.hidden = {hidden};
  m.init = "default";
  m.init_gain = 1.0;
  p->net = LayeredNet(m, std::vector<int64_t>{1, 28, 28}, 10, true);
  p->net->to(torch::kFloat32);
  p->net->to(dev);
  p->obj = make_objective("mse");
  p->energy = std::make_unique<LayeredEnergy>(*p->net, Neuron::from_activation(p->net->rho()), *p->obj);
  const Tensor x = torch::rand({B, 1, 28, 28}).to(dev);
  const Tensor y = torch::randint(0, 10, {B}, torch::kLong).to(dev);
  p->energy->prepare(p->batch, x, y);
  p->energy->init_state(p->batch, p->free_state);
  FixedPointSolver(RelaxKernel::Generic).solve(*p->energy, p->batch, p->free_state, Nudge::none(), free_steps, 0.0);
  return p;
}

// Adds the relaxation rows: a free phase of T sweeps from zero states, or a nudged phase of K sweeps from the free
// equilibrium, fused (fused_relaxation) against FixedPointSolver's LibTorch-operator path (solver.kernel=generic).
void add_relax_case(std::vector<KernelCase>& cases, std::shared_ptr<RelaxProblem> p, const std::string& phase,
                    int64_t steps, int64_t hidden, int64_t B) {
  const Nudge nudge = phase == "free" ? Nudge::none() : Nudge::loss(0.1);
  if (!fused_relaxation_supported(*p->energy, p->batch, nudge)) return;
  auto st_f = std::make_shared<EnergyState>(), st_g = std::make_shared<EnergyState>();
  auto start = [p, phase](EnergyState& st) {
    if (phase == "free") p->energy->init_state(p->batch, st);
    else st.copy_from(p->free_state);
  };
  KernelCase c;
  c.name = "fused_relaxation, " + phase + " phase (" + std::to_string(steps) + " sweeps)";
  c.shape = "784-" + std::to_string(hidden) + "-10 sigmoid4, batch " + std::to_string(B);
  c.unfused_ops = "FixedPointSolver, solver.kernel=generic";
  c.fused = [=] {
    torch::NoGradGuard ng;
    start(*st_f);
    fused_relaxation(*p->energy, p->batch, *st_f, nudge, steps, 0.0);
  };
  c.unfused = [=] {
    torch::NoGradGuard ng;
    start(*st_g);
    FixedPointSolver(RelaxKernel::Generic).solve(*p->energy, p->batch, *st_g, nudge, steps, 0.0);
  };
  c.check = [=] {
    c.fused();
    c.unfused();
    double d = 0;
    for (size_t k = 0; k < st_f->s.size(); ++k) d = std::max(d, max_abs_diff(st_f->s[k], st_g->s[k]));
    return d;
  };
  c.tol = 1e-4;  // states in [0, 1] after T sweeps, summed in another order
  cases.push_back(std::move(c));
}

}  // namespace

void add_relaxation_cases(std::vector<KernelCase>& cases, torch::Device dev, const std::vector<int64_t>& batches,
                          int64_t hidden) {
  for (size_t i = 0; i < batches.size(); ++i) {
    const int64_t B = batches[i];
    auto p = make_relax_problem(hidden, B, dev, 30);
    add_relax_case(cases, p, "free", 30, hidden, B);
    if (i == 0) add_relax_case(cases, p, "nudged", 10, hidden, B);
  }
}

}  // namespace bilevel::gpu_bench
