// From a trained (quantized) network to the exported integer model, and the per-layer size summary.
#pragma once

#include <string>
#include <vector>

#include "bilevel/nn/layered_net.h"
#include "bilevel/quant/model_file.h"
#include "bilevel/quant/quantization.h"

namespace bilevel {

// The integer model of `net` (weights as codes + scales; layers the quantization does not cover as float32).
// `quant` may be null (a full-precision model: every layer float32). `warnings` gets a line for each layer whose
// training-time weights are not on the grid (an annealing solver that has not finished), which export hard-quantizes.
ExportedModel export_model(const LayeredNetImpl& net, const QuantizationImpl* quant, std::vector<std::string>* warnings);

// One row of `bilevel summary`.
struct LayerSummary {
  std::string name;          // e.g. "fc1 linear 784→512"
  int64_t params = 0;        // weights + biases
  int weight_bits = 32;
  int64_t weights = 0;
  int64_t macs = 0;          // multiply-accumulates per example
  int64_t float_bytes = 0;   // as float32
  int64_t packed_bytes = 0;  // weights packed at their bit width (rows padded to 64 bits), biases and scales float32
};
std::vector<LayerSummary> summarize(const LayeredNetImpl& net, const QuantizationImpl* quant);

}  // namespace bilevel
