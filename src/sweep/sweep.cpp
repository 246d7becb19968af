#include "bilevel/sweep/sweep.h"

#include <cmath>
#include <cstdio>
#include <set>

namespace bilevel {

SweepError::SweepError(const std::string& argument, size_t position, const std::string& message)
    : UserError("sweep '" + argument + "', position " + std::to_string(position) + ": " + message) {}

namespace {

struct Piece {
  std::string text;
  size_t position;  // 1-based, in the argument
};

// Splits `s` (starting at `offset` in `arg`) at commas outside brackets and parentheses.
std::vector<Piece> split_top_level(const std::string& arg, const std::string& s, size_t offset) {
  std::vector<Piece> pieces;
  std::vector<std::pair<char, size_t>> open;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    const char c = i < s.size() ? s[i] : ',';
    if (i < s.size() && (c == '[' || c == '(')) {
      open.emplace_back(c, i);
    } else if (i < s.size() && (c == ']' || c == ')')) {
      if (open.empty() || (open.back().first == '[') != (c == ']'))
        throw SweepError(arg, offset + i + 1, std::string("'") + c + "' closes nothing");
      open.pop_back();
    } else if (c == ',' && open.empty()) {
      if (i == start) throw SweepError(arg, offset + i + 1, "empty value");
      pieces.push_back({s.substr(start, i - start), offset + start + 1});
      start = i + 1;
    }
  }
  if (!open.empty())
    throw SweepError(arg, offset + open.back().second + 1, std::string("'") + open.back().first + "' is never closed");
  return pieces;
}

bool is_integer(const std::string& s) {
  size_t i = (s.size() > 1 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i >= s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

double number(const std::string& arg, const Piece& p) {
  std::string t = p.text;
  const size_t lead = t.find_first_not_of(' ');
  t = lead == std::string::npos ? "" : t.substr(lead, t.find_last_not_of(' ') - lead + 1);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(t, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (t.empty() || used != t.size() || !std::isfinite(v))
    throw SweepError(arg, p.position, "range() expects numbers, got '" + p.text + "'");
  return v;
}

std::string format_number(double v, bool integer) {
  char buf[40];
  if (integer) std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(std::llround(v)));
  else std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, s.find_last_not_of(' ') - a + 1);
}

// range(start, stop[, step]) → its values.
std::vector<std::string> expand_range(const std::string& arg, const std::string& inner, size_t offset) {
  const auto parts = split_top_level(arg, inner, offset);
  if (parts.size() < 2 || parts.size() > 3)
    throw SweepError(arg, offset, "range() takes start, stop and an optional step, got " +
                                      std::to_string(parts.size()) + " argument" + (parts.size() == 1 ? "" : "s"));
  const double start = number(arg, parts[0]), stop = number(arg, parts[1]);
  const double step = parts.size() == 3 ? number(arg, parts[2]) : 1.0;
  bool integer = true;
  for (const auto& p : parts) integer = integer && is_integer(trimmed(p.text));
  if (step == 0) throw SweepError(arg, parts[2].position, "range() step must not be 0");
  std::vector<std::string> values;
  for (int64_t i = 0;; ++i) {
    const double v = start + double(i) * step;
    // A tolerance of a millionth of a step, so that range(0,1,0.1) stops before 1 despite rounding.
    if (step > 0 ? v >= stop - 1e-6 * step : v <= stop - 1e-6 * step) break;
    if (values.size() >= 100000) throw SweepError(arg, offset, "range() has more than 100000 values");
    values.push_back(format_number(v, integer));
  }
  if (values.empty()) throw SweepError(arg, offset, "range() is empty");
  return values;
}

}  // namespace

Sweep parse_sweep(const std::vector<std::string>& overrides) {
  Sweep sweep;
  std::set<std::string> swept;
  for (const std::string& arg : overrides) {
    const size_t eq = arg.find('=');
    if (eq == std::string::npos || arg[0] == '~') {
      sweep.fixed.push_back(arg);
      continue;
    }
    const std::string key = arg.substr(0, eq), value = arg.substr(eq + 1);
    if (key.empty()) throw SweepError(arg, 1, "no key before '='");
    if (value.empty()) throw SweepError(arg, eq + 2, "no value after '='");
    std::vector<std::string> values;
    auto function = [&](const char* name) {
      const std::string prefix = std::string(name) + "(";
      return value.rfind(prefix, 0) == 0;
    };
    if (function("range") || function("choice")) {
      const size_t open = value.find('(');
      // The whole value must be one call: range(...) with nothing after its closing parenthesis.
      const auto whole = split_top_level(arg, value, eq + 1);
      if (whole.size() != 1 || value.back() != ')')
        throw SweepError(arg, eq + 2, value.substr(0, open) + "(...) must be the whole value");
      const std::string inner = value.substr(open + 1, value.size() - open - 2);
      const size_t inner_offset = eq + 1 + open + 1;
      if (function("range")) {
        values = expand_range(arg, inner, inner_offset);
      } else {
        if (trimmed(inner).empty()) throw SweepError(arg, inner_offset + 1, "choice() needs at least one value");
        for (const auto& p : split_top_level(arg, inner, inner_offset)) values.push_back(trimmed(p.text));
      }
    } else {
      const auto pieces = split_top_level(arg, value, eq + 1);
      if (pieces.size() == 1) {
        sweep.fixed.push_back(arg);
        continue;
      }
      for (const auto& p : pieces) values.push_back(p.text);
    }
    std::string bare = key[0] == '+' ? key.substr(1) : key;
    if (!swept.insert(bare).second) throw SweepError(arg, 1, "key '" + bare + "' is swept twice");
    sweep.params.push_back({bare, values});
  }
  return sweep;
}

std::vector<std::vector<std::string>> Sweep::points() const {
  std::vector<std::vector<std::string>> out{{}};
  for (const auto& p : params) {
    std::vector<std::vector<std::string>> next;
    for (const auto& prefix : out)
      for (const auto& v : p.values) {
        auto point = prefix;
        point.push_back(p.key + "=" + v);
        next.push_back(std::move(point));
      }
    out = std::move(next);
  }
  return out;
}

}  // namespace bilevel
