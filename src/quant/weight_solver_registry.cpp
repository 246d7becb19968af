// The quantization solvers' registry (weight_solvers(), bilevel/registry.h), each with its keys under
// quantization.NAME (e.g. quantization.ste.clip), registered through the public add() like a user's solver.
#include "bilevel/quant/weight_solvers.h"
#include "bilevel/registry.h"

namespace bilevel {

namespace {

KeySpec positive(std::string name, std::string def, std::string help) {
  auto k = component_key(std::move(name), ValueType::Float, std::move(def), std::move(help));
  k.min = 0, k.min_exclusive = true;
  return k;
}

void add_builtin_solvers(Registry<WeightSolver>& r) {
  using V = ValueType;
  auto clip = positive("clip", "1.0", "(binary/ternary) latent clip |θ/s| <= clip and gradient mask (BinaryConnect: 1)");
  r.add({"ste", "straight-through estimator (BinaryConnect; Courbariaux et al. 2015)", {clip}}, make_ste_solver);
  auto growth = component_key("growth", V::Float, "1.05", "β ← β·growth each epoch");
  growth.min = 1;
  r.add({"adaste", "adaptive straight-through estimator from the bilevel view (Le et al., CVPR 2022)",
         {positive("alpha", "0.01", "α of the inner problem (β stops growing at 1/α)"),
          positive("beta0", "0.01", "β at epoch 0"), growth}},
        make_adaste_solver);
  auto rate = component_key("rate", V::Float, "0.1", "λ_t = lr_t · rate · t (t in epochs; λ in units of the grid step)");
  rate.min = 0;
  auto freeze = component_key("freeze_epoch", V::Int, "0",
                              "from this epoch (1-based) on, weights are hard-quantized and frozen (0 = the last epoch)");
  freeze.min = 0;
  r.add({"proxquant", "proximal steps towards the grid, hard freeze at the end (Bai et al., ICLR 2019)", {rate, freeze}},
        make_proxquant_solver);
  auto mgrowth = component_key("growth", V::Float, "1.5", "β_t = beta0 · growth^t (t in epochs)");
  mgrowth.min = 1;
  r.add({"mirror", "mirror descent through an annealed tanh / softmax map (Ajanthan et al., AISTATS 2021)",
         {positive("beta0", "1.0", "β at t = 0 of w = s·tanh(2βθ/s) (softmax over levels for k bits)"), mgrowth}},
        make_mirror_solver);
  r.add({"lsq", "learned step size (Esser et al., ICLR 2020)", {}}, make_lsq_solver);
  auto gamma = component_key("gamma", V::Float, "0.001", "rate γ of the gradient moving average m");
  gamma.min = 0, gamma.min_exclusive = true, gamma.max = 1;
  auto tau = component_key("tau", V::Float, "1e-6", "threshold τ; a weight flips when m·sign(w) > τ");
  tau.min = 0;
  auto layer_taus = component_key("layer_taus", V::FloatList, "[]",
                                  "per-layer thresholds, input side first (empty = tau for every layer; Laydevant et "
                                  "al. 2021 set one per layer)");
  layer_taus.min = 0;
  r.add({"flip", "latent-free sign flips on a gradient moving average (Helwegen et al. 2019; Laydevant et al. 2021)",
         {gamma, tau, layer_taus}},
        make_flip_solver);
}

}  // namespace

Registry<WeightSolver>& weight_solvers() {
  static Registry<WeightSolver> registry("quantization solver", add_builtin_solvers);
  return registry;
}

std::vector<std::string> weight_solver_names() { return weight_solvers().names(); }

std::unique_ptr<WeightSolver> make_weight_solver(const std::string& name, const ExperimentConfig& cfg,
                                                 const std::string& key) {
  return weight_solvers().make_or_fail(name, cfg, key);
}

}  // namespace bilevel
