// Integer inference of an exported quantized model (bilevel/quant/model_file.h): independent of the training-time
// fake quantization. Each layer computes its pre-activations from integer codes:
//
//   binary weights × binary activations:  z_o = s_o·(m·Σ_k w_ok + h·(K − 2·popcount(w_o XOR a))) + b_o
//        (w, a ∈ {−1, +1} as bits; the activation's two levels are m ± h; XNOR-popcount, 64 weights a word)
//   k-bit weights × k-bit codes:          z_o = s_o·(d·(Σ_k q_ok c_k − z_o Σ_k c_k) + e·(Σ_k q_ok − K z_o)) + b_o
//        (weights s_o(q − z_o), activations e + d·c; exact int32 accumulation of int16 codes)
//   full-precision layers or activations: float products (the only float arithmetic besides the affine epilogue)
//
// The input images are 8-bit (x = c/255, checked); conv layers run as im2col + the same products, then max-pool on
// z (as the float network does), then ρ and the activation's rounding (element.h's uniform_code, the same function
// training uses, so both agree wherever the float and integer z agree).
#pragma once

#include <string>
#include <vector>

#include "bilevel/quant/model_file.h"

namespace bilevel {

class IntegerModel {
 public:
  // Throws UserError for a model it cannot run (e.g. inputs that are not 8-bit codes).
  explicit IntegerModel(ExportedModel model);
  // Outputs [N, classes] (logits, or ρ(z_L) when the model's outputs are states) for N images [N, C, H, W].
  std::vector<float> forward(const float* images, int64_t N) const;
  // One line per layer: which product it uses.
  std::vector<std::string> describe() const;
  const ExportedModel& model() const { return m_; }

 private:
  struct Prepared {
    std::vector<int16_t> codes;    // weight codes [O, K] (integer layers)
    std::vector<int8_t> codes8;    // the same as int8, when they fit (for unsigned 8-bit inputs)
    int codes8_max_abs = 128;      // max |q| of codes8
    std::vector<float> values;     // dequantized weights (float layers)
    std::vector<int64_t> code_sum; // Σ_k q_ok
    std::vector<int64_t> sign_sum; // binary: Σ_k w_ok (±1)
  };
  ExportedModel m_;
  std::vector<Prepared> prep_;
};

}  // namespace bilevel
