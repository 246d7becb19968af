// Quantization solvers: how the outer gradient passes through the weights' inner problem w*(θ) (bilevel/quant/
// quantizer.h), just as learning rules differ in how they pass it through the states' inner problem. A solver
// owns one quantized weight tensor's training-time map θ → w, turns the learning rule's ∂ℓ/∂w into the latent
// update ∂ℓ/∂θ (or, for the latent-free flip rule, changes w itself), and may act after the optimizer step (clip,
// prox). Schedules (AdaSTE's and mirror descent's β, ProxQuant's λ) are pure functions of (epoch, batch), so a
// resumed run needs no state beyond what QuantParam holds (and the checkpoint stores).
//
// Built-in solvers, one file each in src/quant/ (each states its equations):
//   ste        BinaryConnect straight-through estimator                 (Courbariaux, Bengio & David 2015)
//   adaste     adaptive STE from the bilevel view                       (Le, Høier, Lin & Zach, CVPR 2022)
//   proxquant  proximal steps towards the grid, hard freeze at the end  (Bai, Wang & Liberty, ICLR 2019)
//   mirror     mirror descent through an annealed tanh / softmax map    (Ajanthan et al., AISTATS 2021)
//   lsq        learned step size                                        (Esser et al., ICLR 2020)
//   flip       latent-free sign flips on a gradient moving average      (Helwegen et al. 2019; Laydevant et al. 2021)
#pragma once

#include <torch/types.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/kernels/adam_element.h"
#include "bilevel/quant/quantizer.h"

namespace bilevel {

// Where training is: the schedule's argument.
struct QuantClock {
  uint64_t seed = 0;
  int64_t epoch = 0;    // 0-based
  int64_t batch = 0;    // 0-based within the epoch
  int64_t batches = 1;  // batches per epoch
  int64_t epochs = 1;
  double lr = 0;        // the layer's learning rate this epoch
  double t() const { return double(epoch) + double(batch) / double(batches); }  // fractional epochs
};

// One quantized weight tensor and everything its solver keeps.
struct QuantParam {
  size_t layer = 0;       // 0-based layer index
  torch::Tensor weight;   // the network's parameter: always the weights the learning rules see
  torch::Tensor latent;   // θ (a parameter the optimizer steps), undefined for flip
  GridParams grid;        // scale (a parameter when learned) and zero point
  torch::Tensor momentum; // flip: the moving average m of the gradient
  bool learn_scale = false;  // the scale is learned: backward() also wants ∂ℓ/∂s
  // θ's gradient buffer between steps: backward() overwrites θ.grad whole, so after the optimizer step the buffer is
  // parked here and θ.grad left undefined (the optimizer's zero_grad then skips a pass over it).
  torch::Tensor grad_cache;
  // The scale backward() sees, kept by a fused step (fused_adam_step) that runs after the optimizer stepped the scale.
  torch::Tensor scale_before;
  uint64_t stream = 0;    // counter-RNG stream of this tensor
};

class WeightSolver {
 public:
  virtual ~WeightSolver() = default;
  virtual std::string name() const = 0;
  // Whether θ exists and the optimizer steps it (false: the solver updates w itself).
  virtual bool uses_latent() const { return true; }
  // Called once the network is known (its number of layers): a ConfigError, through cfg.fail, for per-layer
  // settings that do not fit it.
  virtual void check_layers(size_t layers, const ExperimentConfig& cfg) const {}
  // Whether the solver learns the grid's scale itself (lsq), writing its gradient in backward(). Other solvers'
  // scales are learned when quantization.weights.learn_scale is set, with ∂ℓ/∂s = Σ ∂ℓ/∂w · w/s (per channel).
  virtual bool learns_scale() const { return false; }
  // Whether forward() depends on the clock (an annealed map), so it is recomputed before each batch.
  virtual bool anneals() const { return false; }
  // Which quantizers the solver serves (empty = any); checked at validation.
  virtual std::vector<std::string> quantizers() const { return {}; }
  // Set up θ, the grid and any state from the initial weights (p.weight holds them).
  virtual void init(QuantParam& p, const Quantizer& q) const;
  // The weights w(θ) the coming batch uses. key non-null: stochastic rounding from that stream.
  virtual torch::Tensor forward(const QuantParam& p, const Quantizer& q, const QuantClock& c, const uint64_t* key) const;
  // θ's gradient (and the scale's, when learned) from g = ∂ℓ/∂w. Flip updates w here.
  virtual void backward(QuantParam& p, const Quantizer& q, const torch::Tensor& g, const QuantClock& c) const = 0;
  // After the optimizer step (clip, prox).
  virtual void after_step(QuantParam& p, const Quantizer& q, const QuantClock& c) const {}
  // after_step, then w ← the deterministic forward at c. A solver may fuse the two into one pass.
  virtual void update(QuantParam& p, const Quantizer& q, const QuantClock& c) const;
  // Whether the solver can do backward(), an Adam step of θ and update() in one pass (fused_adam_step).
  virtual bool fuses_adam_step() const { return false; }
  // That pass, from g = ∂ℓ/∂w (left zero), with backward's scale `scale_before` and the grid's (stepped) scale for
  // the update: θ's gradient never exists as a tensor. `a`, m and v: the optimizer's coefficients and θ's moments.
  virtual void fused_adam_step(QuantParam& p, const Quantizer& q, const torch::Tensor& g, const torch::Tensor& scale_before,
                               const kernels::AdamElement& a, const torch::Tensor& m, const torch::Tensor& v) const;
  // Whether backward() leaves the weights' gradient zero for the next batch (then begin_batch need not clear it).
  virtual bool clears_weight_grad() const { return false; }
  // Whether backward() writes ∂ℓ/∂s itself when p.learn_scale (else the caller writes Σ ∂ℓ/∂w · w/s per channel).
  virtual bool writes_scale_grad() const { return learns_scale(); }
  // The integer codes the model exports, and its evaluation-time weights are s·(codes − z).
  virtual torch::Tensor codes(const QuantParam& p, const Quantizer& q) const;
  // The schedule value reported in metrics.csv (name empty: none).
  virtual std::string schedule_name() const { return ""; }
  virtual double schedule(const QuantClock& c) const { return std::nan(""); }
  // |θ/s| beyond which a latent is saturated (its gradient is cut), for the diagnostics; inf = never.
  virtual double saturation() const { return INFINITY; }

  // A learned scale's gradient when the map's output in units of s is held fixed, w = s·f(θ/s): ∂ℓ/∂s = Σ g·w/s
  // per output channel (rows of g are channels; one channel: the whole tensor); one pass on the CPU (float32),
  // LibTorch operators elsewhere.
  static torch::Tensor scale_grad(const torch::Tensor& g, const torch::Tensor& w, const torch::Tensor& scale);
  // The latent in grid units, θ/s + z (broadcast per channel).
  static torch::Tensor normalised(const QuantParam& p);
};

// Builds the solver named by `name` with its keys from cfg (quantization.<name>.*); throws ConfigError naming the
// key for bad values and for an unknown name.
std::unique_ptr<WeightSolver> make_weight_solver(const std::string& name, const ExperimentConfig& cfg,
                                                 const std::string& key);
std::vector<std::string> weight_solver_names();

}  // namespace bilevel
