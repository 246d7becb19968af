#include <stdexcept>

#include "bilevel/quant/quantizers.h"

namespace bilevel {

namespace {
struct QuantizerEntry {
  const char* name;
  std::unique_ptr<Quantizer> (*make)(const QuantizerOptions&);
  int min_bits, max_bits;
};
const QuantizerEntry kQuantizers[] = {
    {"binary", make_binary_quantizer, 1, 1},
    {"ternary", make_ternary_quantizer, 2, 2},
    {"uniform", make_uniform_quantizer, 2, 8},
};
}  // namespace

std::vector<std::string> quantizer_names() {
  std::vector<std::string> out;
  for (const auto& e : kQuantizers) out.push_back(e.name);
  return out;
}

std::unique_ptr<Quantizer> make_quantizer(const QuantizerOptions& opt) {
  for (const auto& e : kQuantizers) {
    if (opt.kind != e.name) continue;
    if (opt.bits < e.min_bits || opt.bits > e.max_bits)
      throw std::invalid_argument(
          "quantizer '" + opt.kind + "' takes " +
          (e.min_bits == e.max_bits ? std::to_string(e.min_bits) + " bit" + (e.min_bits > 1 ? "s" : "")
                                    : std::to_string(e.min_bits) + ".." + std::to_string(e.max_bits) + " bits") +
          ", got bits: " + std::to_string(opt.bits));
    return e.make(opt);
  }
  std::string names;
  for (const auto& n : quantizer_names()) names += (names.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown quantizer '" + opt.kind + "' (expected one of: " + names + ")");
}

}  // namespace bilevel
