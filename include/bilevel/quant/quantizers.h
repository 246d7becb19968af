// The built-in quantizers' factories (one file each in src/quant/), collected by make_quantizer().
#pragma once

#include "bilevel/quant/quantizer.h"

namespace bilevel {

std::unique_ptr<Quantizer> make_binary_quantizer(const QuantizerOptions& o);
std::unique_ptr<Quantizer> make_ternary_quantizer(const QuantizerOptions& o);
std::unique_ptr<Quantizer> make_uniform_quantizer(const QuantizerOptions& o);

}  // namespace bilevel
