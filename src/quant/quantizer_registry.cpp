// The quantizers' registry (quantizers(), bilevel/registry.h): the built-in grids are registered through the same
// public add() as a user's; make_quantizer() builds whichever is named.
#include <stdexcept>

#include "bilevel/quant/quantizers.h"
#include "bilevel/registry.h"

namespace bilevel {

namespace {

// A factory that refuses bit widths outside [lo, hi] with a message naming the grid and its range.
Registry<Quantizer, const QuantizerOptions&>::Factory with_bits(
    int lo, int hi, std::unique_ptr<Quantizer> (*make)(const QuantizerOptions&)) {
  return [lo, hi, make](const QuantizerOptions& o) {
    if (o.bits < lo || o.bits > hi)
      throw std::invalid_argument("quantizer '" + o.kind + "' takes " +
                                  (lo == hi ? std::to_string(lo) + " bit" + (lo > 1 ? "s" : "")
                                            : std::to_string(lo) + ".." + std::to_string(hi) + " bits") +
                                  ", got bits: " + std::to_string(o.bits));
    return make(o);
  };
}

void add_builtin_quantizers(Registry<Quantizer, const QuantizerOptions&>& r) {
  r.add({"binary", "sign·scale, 1 bit (scale mean|θ|: Rastegari et al. 2016)", {}}, with_bits(1, 1, make_binary_quantizer));
  r.add({"ternary", "{-1, 0, 1}·scale, 2 bits (threshold 0.7·mean|θ|: Li, Zhang & Liu 2016)", {}},
        with_bits(2, 2, make_ternary_quantizer));
  r.add({"uniform", "k-bit integer grid, symmetric or with a zero point, 2..8 bits", {}},
        with_bits(2, 8, make_uniform_quantizer));
}

}  // namespace

Registry<Quantizer, const QuantizerOptions&>& quantizers() {
  static Registry<Quantizer, const QuantizerOptions&> registry("quantizer", add_builtin_quantizers);
  return registry;
}

std::vector<std::string> quantizer_names() { return quantizers().names(); }

std::unique_ptr<Quantizer> make_quantizer(const QuantizerOptions& opt) {
  return quantizers().get(opt.kind).make(opt);
}

std::optional<kernels::CodeSpec> builtin_code_spec(const Quantizer& q) {
  const std::string n = q.name();
  kernels::CodeKind kind;
  if (n == "binary") kind = kernels::CodeKind::Binary;
  else if (n == "ternary") kind = kernels::CodeKind::Ternary;
  else if (n == "uniform") kind = kernels::CodeKind::Uniform;
  else return std::nullopt;
  return kernels::CodeSpec{kind, float(q.code_min()), float(q.code_max())};
}

}  // namespace bilevel
