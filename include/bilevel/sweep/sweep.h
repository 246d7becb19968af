// Multirun sweeps in Hydra's grammar: `bilevel train CONFIG -m optimizer.lr=1e-3,3e-4 seed=0,1,2` runs the grid
// (the Cartesian product of every swept key's values, the first key varying slowest). An override is swept when
// its value is a comma-separated list (commas inside [...] or (...) belong to the value, so
// model.hidden=[256],[512,256] sweeps two lists), or range(start, stop[, step]) (stop excluded, as in Python and
// Hydra; integers when all three are, else numbers), or choice(a, b, ...). Any other override is fixed and applies
// to every point.
#pragma once

#include <string>
#include <vector>

#include "bilevel/util/error.h"

namespace bilevel {

// A malformed sweep: names the argument and the 1-based character position in it.
class SweepError : public UserError {
 public:
  SweepError(const std::string& argument, size_t position, const std::string& message);
};

struct SweepParam {
  std::string key;                  // as written, e.g. "optimizer.lr"
  std::vector<std::string> values;  // each a value in the override grammar, e.g. "1e-3", "[256,128]"
};

struct Sweep {
  std::vector<std::string> fixed;   // overrides every point gets
  std::vector<SweepParam> params;   // in command-line order
  // The grid's points: each a list of "key=value" overrides (params order), first key slowest.
  std::vector<std::vector<std::string>> points() const;
};

// Parses command-line overrides. Throws SweepError naming the argument and the position of the problem (an empty
// value, an unbalanced bracket or parenthesis, a malformed or empty range, a key swept twice).
Sweep parse_sweep(const std::vector<std::string>& overrides);

}  // namespace bilevel
