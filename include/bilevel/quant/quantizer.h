// Quantizers: the inner problem on the weights (or on the neural states), w*(θ) = argmin_{w ∈ Q} |w − θ| for the
// grid Q = { s·(q − z) : q ∈ [q_min, q_max] integer } of one tensor (or of each output channel), with step / scale s
// and zero point z (0 when symmetric). Rounding to the nearest grid point is that projection; stochastic rounding
// draws q ∈ {⌊x⌋, ⌈x⌉} with E[q] = x (x = θ/s + z), from a counter-based stream keyed on (seed, epoch, batch, layer).
//
//   binary   (1 bit):  q = sign(θ) ∈ {−1, +1}, s = mean|θ| (Rastegari et al. 2016's optimal scale; per channel or per
//                       tensor); stochastic: P(q = +1) = clip((θ/s + 1)/2, 0, 1) (Courbariaux et al. 2015)
//   ternary  (2 bits): q = sign(θ)·[|θ| > t·s] ∈ {−1, 0, +1}, s = mean|θ|, t = 0.7 (Li, Zhang & Liu 2016, "Ternary
//                       weight networks": threshold 0.7·mean|w|)
//   uniform  (k bits): symmetric q ∈ [−2^{k−1}, 2^{k−1} − 1], s = 2·mean|θ|/√Q_P (LSQ's initial step, Esser et al.
//                       2020); asymmetric q ∈ [0, 2^k − 1], s = (max θ − min θ)/(2^k − 1), z = round(−min θ / s)
//
// Every quantizer's element-wise math is in bilevel/kernels/quant_element.h; this class applies it to tensors (float32,
// contiguous) with the grid parameters broadcast per tensor or per output channel (dimension 0).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bilevel/kernels/quant_codes.h"
#include "bilevel/kernels/quant_element.h"

namespace bilevel {

using qe::kTernaryThreshold;

struct QuantizerOptions {
  std::string kind = "binary";  // binary | ternary | uniform, or a registered quantizer (registry.h)
  int bits = 1;                 // uniform: 2..8
  bool symmetric = true;        // uniform only
  bool per_channel = false;     // one scale per output channel (dimension 0)
  bool stochastic = false;      // stochastic rounding during training
};

// The grid of one tensor: s and z of shape [1] (per tensor) or [C] (per channel).
struct GridParams {
  torch::Tensor scale;
  torch::Tensor zero;
};

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  explicit Quantizer(QuantizerOptions o) : opt_(std::move(o)) {}
  const QuantizerOptions& options() const { return opt_; }
  virtual std::string name() const = 0;
  // Bits a value takes in a packed file.
  virtual int storage_bits() const = 0;
  // The integer code range.
  virtual float code_min() const = 0;
  virtual float code_max() const = 0;
  // The grid fitted to θ (scale, zero point) as described above.
  virtual GridParams fit(const torch::Tensor& theta) const = 0;
  // Integer codes (as float) of θ. `key` non-null: stochastic rounding from that stream.
  torch::Tensor codes(const torch::Tensor& theta, const GridParams& g, const uint64_t* key = nullptr) const;
  // s·(q − z), broadcast per channel.
  torch::Tensor dequantize(const torch::Tensor& codes, const GridParams& g) const;
  torch::Tensor quantize(const torch::Tensor& theta, const GridParams& g, const uint64_t* key = nullptr) const {
    return dequantize(codes(theta, g, key), g);
  }
  // Every grid value for channel c (ascending).
  std::vector<float> levels(const GridParams& g, int64_t channel = 0) const;
  // q for x = θ/s + z (deterministic), or with uniform u ∈ [0, 1) (stochastic).
  virtual float code(float x) const = 0;
  virtual float code_stochastic(float x, float u) const = 0;
  // θ's scale / zero broadcast to θ's shape (per channel: [C, 1, 1, ...]).
  static torch::Tensor broadcast(const torch::Tensor& per_channel, const torch::Tensor& like);
  // Σ of t per output channel ([channels], dimension 0), or over all of t ([1]) when channels is 1; a new tensor.
  static torch::Tensor channel_sum(const torch::Tensor& t, int64_t channels);

 protected:
  // mean|θ| per tensor or per channel, as [1] or [C].
  torch::Tensor mean_abs(const torch::Tensor& theta) const;
  QuantizerOptions opt_;
};

// Deterministic codes as small function objects, so hot loops inline them (see with_code).
struct BinaryCode {
  float operator()(float x) const { return qe::binary_code(x); }
};
struct TernaryCode {
  float operator()(float x) const { return qe::ternary_code(x, kTernaryThreshold); }
};
struct UniformCode {
  float lo, hi;
  float operator()(float x) const { return qe::uniform_code(x, lo, hi); }
};
// A registered quantizer's code, through its virtual code().
struct AnyCode {
  const Quantizer* q;
  float operator()(float x) const { return q->code(x); }
};

// The grid of a built-in quantizer (binary, ternary, uniform) as kernel data, whose codes the kernels and fused
// loops inline; nullopt for a registered one (its codes go through its virtual code()). The one place that maps
// a quantizer's name to a grid.
std::optional<kernels::CodeSpec> builtin_code_spec(const Quantizer& q);
inline bool is_builtin_quantizer(const Quantizer& q) { return builtin_code_spec(q).has_value(); }

// Calls fn(code) with the code function object of q's grid.
template <class Fn>
void with_code(const Quantizer& q, Fn&& fn) {
  const auto spec = builtin_code_spec(q);
  if (!spec) return fn(AnyCode{&q});
  switch (spec->kind) {
    case kernels::CodeKind::Binary: return fn(BinaryCode{});
    case kernels::CodeKind::Ternary: return fn(TernaryCode{});
    case kernels::CodeKind::Uniform: return fn(UniformCode{q.code_min(), q.code_max()});
  }
}

// Builds the quantizer `opt.kind` from the registry (quantizers(), bilevel/registry.h); throws
// std::invalid_argument naming what is wrong (unknown kind, bits).
std::unique_ptr<Quantizer> make_quantizer(const QuantizerOptions& opt);
std::vector<std::string> quantizer_names();

}  // namespace bilevel
