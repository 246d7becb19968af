// Multirun sweeps: the grammar (lists, brackets, range, choice), the grid's order, and malformed sweeps rejected
// with the argument and the position named; `bilevel train -m` running a grid as a suite.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bilevel/sweep/sweep.h"
#include "test_util.h"

using namespace bilevel;
using testutil::contains;

namespace {
using Strings = std::vector<std::string>;

std::string error_of(const Strings& overrides) {
  try {
    parse_sweep(overrides);
  } catch (const SweepError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(SweepGrammar, ListsAndFixedOverrides) {
  const Sweep s = parse_sweep({"optimizer.lr=1e-3,3e-4", "train.epochs=2", "seed=0,1,2", "~scheduler.name",
                               "model.hidden=[256,128]"});
  EXPECT_EQ(s.fixed, (Strings{"train.epochs=2", "~scheduler.name", "model.hidden=[256,128]"}));
  ASSERT_EQ(s.params.size(), 2u);
  EXPECT_EQ(s.params[0].key, "optimizer.lr");
  EXPECT_EQ(s.params[0].values, (Strings{"1e-3", "3e-4"}));
  EXPECT_EQ(s.params[1].values, (Strings{"0", "1", "2"}));
  const auto points = s.points();
  ASSERT_EQ(points.size(), 6u);
  EXPECT_EQ(points[0], (Strings{"optimizer.lr=1e-3", "seed=0"}));
  EXPECT_EQ(points[1], (Strings{"optimizer.lr=1e-3", "seed=1"}));
  EXPECT_EQ(points[5], (Strings{"optimizer.lr=3e-4", "seed=2"}));
}

TEST(SweepGrammar, BracketedListsAreOneValue) {
  const Sweep s = parse_sweep({"model.hidden=[256],[512,256]", "+train.beta=0.1,0.2"});
  ASSERT_EQ(s.params.size(), 2u);
  EXPECT_EQ(s.params[0].values, (Strings{"[256]", "[512,256]"}));
  EXPECT_EQ(s.params[1].key, "train.beta");
  EXPECT_EQ(s.points().size(), 4u);
}

TEST(SweepGrammar, RangeAndChoice) {
  EXPECT_EQ(parse_sweep({"seed=range(0,3)"}).params[0].values, (Strings{"0", "1", "2"}));
  EXPECT_EQ(parse_sweep({"seed=range(10,0,-4)"}).params[0].values, (Strings{"10", "6", "2"}));
  EXPECT_EQ(parse_sweep({"train.beta=range(0.1, 0.45, 0.1)"}).params[0].values,
            (Strings{"0.1", "0.2", "0.3", "0.4"}));
  // Rounding does not add the stop value: 0 + 10 × 0.1 is not below 1.
  EXPECT_EQ(parse_sweep({"x=range(0,1,0.1)"}).params[0].values.size(), 10u);
  EXPECT_EQ(parse_sweep({"optimizer.name=choice(sgd, adam)"}).params[0].values, (Strings{"sgd", "adam"}));
  // One value in choice() is still a sweep (of one point).
  EXPECT_EQ(parse_sweep({"optimizer.name=choice(sgd)"}).params.size(), 1u);
}

TEST(SweepGrammar, MalformedSweepsNameThePosition) {
  struct Case {
    std::string arg, expected;
  };
  for (const Case& c : std::vector<Case>{
           {"optimizer.lr=1e-3,,3e-4", "sweep 'optimizer.lr=1e-3,,3e-4', position 19: empty value"},
           {"seed=0,1,", "sweep 'seed=0,1,', position 10: empty value"},
           {"seed=,1", "sweep 'seed=,1', position 6: empty value"},
           {"seed=", "sweep 'seed=', position 6: no value after '='"},
           {"=1,2", "sweep '=1,2', position 1: no key before '='"},
           {"model.hidden=[256,[1]", "sweep 'model.hidden=[256,[1]', position 14: '[' is never closed"},
           {"model.hidden=256],[1]", "sweep 'model.hidden=256],[1]', position 17: ']' closes nothing"},
           {"seed=range(0,3", "sweep 'seed=range(0,3', position 11: '(' is never closed"},
           {"seed=range(0)", "sweep 'seed=range(0)', position 11: range() takes start, stop and an optional step"},
           {"seed=range(0,a)", "sweep 'seed=range(0,a)', position 14: range() expects numbers, got 'a'"},
           {"seed=range(0,3,0)", "sweep 'seed=range(0,3,0)', position 16: range() step must not be 0"},
           {"seed=range(3,0)", "sweep 'seed=range(3,0)', position 11: range() is empty"},
           {"seed=range(0,3),5", "sweep 'seed=range(0,3),5', position 6: range(...) must be the whole value"},
           {"x=choice()", "sweep 'x=choice()', position 10: choice() needs at least one value"},
       }) {
    const std::string e = error_of({c.arg});
    EXPECT_EQ(e.substr(0, c.expected.size()), c.expected) << c.arg << " gave: " << e;
  }
  EXPECT_TRUE(contains(error_of({"seed=0,1", "seed=2,3"}), "key 'seed' is swept twice"));
}
