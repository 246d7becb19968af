// Quantization of the neural states (hidden layers' outputs s_l = ρ(z_l)).
//
//   fixed grid (solver ste): ρ's range [lo, hi] (ρ must be bounded) split into 2^k levels,
//       Q(s) = lo + Δ·round((s − lo)/Δ),  Δ = (hi − lo)/(2^k − 1)      (k = 1: lo or hi, threshold at the midpoint)
//     backward (autograd rules): the straight-through estimator ∂Q/∂s = 1, so ∂ℓ/∂z = ∂ℓ/∂s·ρ'(z) as for the
//     unquantized network (Bengio, Léonard & Courville 2013; Hubara et al. 2016).
//   learned step (solver lsq, backprop only; Esser et al. 2020): Q(s) = s_l·round(clip(s/s_l, −Q_N, Q_P)) with a
//     learned step s_l per layer, unsigned (Q_N = 0, Q_P = 2^k − 1) when ρ ≥ 0, else signed; the step is
//     initialised from the first training batch, 2·mean|s|/√Q_P, and its gradient scaled by 1/√(N·Q_P).
//
// Stochastic rounding (training only) draws from the counter-based stream of (seed, epoch, batch, layer).
// Rules: backprop and dual propagation fake-quantize ρ's output in the forward pass; the EP family quantizes the
// states inside the relaxation (bilevel/energy/layered_energy.h says which fixed point that is).
#pragma once

#include <torch/nn/module.h>

#include <set>
#include <string>
#include <vector>

#include "bilevel/nn/layered_net.h"

namespace bilevel {

struct ActivationQuantOptions {
  std::string kind = "binary";  // binary | uniform
  int bits = 1;
  bool learned = false;         // lsq
  bool stochastic = false;
  double lo = 0, hi = 1;        // ρ's range (fixed grid)
  bool signed_range = false;    // lsq: ρ takes negative values
  std::set<size_t> full_precision;  // 0-based hidden layers left unquantized
};

class ActivationQuantizer final : public StateQuantizer {
 public:
  // steps: one learned step per hidden layer (lsq), registered by the owner; may be empty otherwise.
  ActivationQuantizer(ActivationQuantOptions o, std::vector<torch::Tensor> steps);
  bool covers(size_t layer) const override { return opt_.full_precision.count(layer) == 0; }
  torch::Tensor apply(const torch::Tensor& s, size_t layer, bool training) const override;
  void apply_(torch::Tensor& s, size_t layer, bool training) const override;
  // A fixed 1-bit grid with deterministic rounding (always, or outside training for stochastic rounding).
  bool binary_levels(size_t layer, bool training, float& level, float& step) const override;
  // The stream key for stochastic rounding during the coming batch (0: deterministic).
  void set_stream(uint64_t seed, int64_t epoch, int64_t batch) { seed_ = seed, epoch_ = epoch, batch_ = batch; }
  const ActivationQuantOptions& options() const { return opt_; }
  // The integer code range and the value of code q: lo + Δ·q (fixed) or step·q (lsq).
  float code_min() const;
  float code_max() const;
  float step(size_t layer) const;
  float offset() const { return opt_.learned ? 0.f : float(opt_.lo); }

 private:
  torch::Tensor codes(const torch::Tensor& s, size_t layer, bool training) const;
  // lsq: a step that is still ≤ 0 is set from the batch s (LSQ's initialisation); off the CPU without reading it.
  void init_step(const torch::Tensor& s, size_t layer) const;
  ActivationQuantOptions opt_;
  std::vector<torch::Tensor> steps_;
  uint64_t seed_ = 0;
  int64_t epoch_ = 0, batch_ = 0;
};

}  // namespace bilevel
