// AMCT's binary-search rollback: the trials it runs and where it stops.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "amct/auto_calibration.h"
#include "amct/error.h"

namespace amct {
namespace {

// Layers "l0".."l<n-1>", l0 the most sensitive.
std::vector<LayerScore> scores(int n) {
  std::vector<LayerScore> out;
  for (int i = n - 1; i >= 0; --i) out.push_back({"l" + std::to_string(i), 0.5 + 0.01 * i});
  return out;
}

int rolled_back_count(const RollbackConfig& config) {
  int count = 0;
  for (const auto& [layer, quantized] : config) count += quantized ? 0 : 1;
  return count;
}

// Runs the search with an evaluator that is satisfied once `needed` layers
// are rolled back; returns the rolled-back counts of the trials in order.
std::vector<int> run(RollbackSearch& search, int needed) {
  std::vector<int> trials;
  while (search.searching()) {
    const int count = rolled_back_count(search.proposal());
    EXPECT_EQ(static_cast<int>(search.rolled_back().size()), count);
    trials.push_back(count);
    search.report({count >= needed, 0.1 * (needed - count)});
  }
  return trials;
}

TEST(RollbackSearch, GlobalSatisfiedNeedsNoTrial) {
  RollbackSearch search(scores(3), {true, 0.0}, {true, 0.0});
  EXPECT_EQ(search.outcome(), RollbackSearch::Outcome::kAllQuantized);
  EXPECT_EQ(rolled_back_count(search.final_config()), 0);
  ASSERT_EQ(search.history().size(), 1u);
  // The global record keeps the layer order, not the ranking.
  EXPECT_EQ(search.history()[0].config.front().first, "l2");
}

TEST(RollbackSearch, AmctTraceFiveLayersTwoNeeded) {
  RollbackSearch search(scores(5), {false, 0.2}, {true, 0.0});
  EXPECT_EQ(search.ranking().front().layer, "l0");
  EXPECT_EQ(run(search, 2), (std::vector<int>{3, 1, 2}));
  EXPECT_EQ(search.outcome(), RollbackSearch::Outcome::kPartialRollback);
  EXPECT_EQ(search.final_config(), (RollbackConfig{{"l0", false}, {"l1", false}, {"l2", true}, {"l3", true},
                                                   {"l4", true}}));
  EXPECT_EQ(search.trials(), 3);
  EXPECT_EQ(search.history().size(), 4u);
}

TEST(RollbackSearch, AFailedLastStepReevaluatesTheLastSatisfiedProposal) {
  RollbackSearch search(scores(5), {false, 0.3}, {true, 0.0});
  EXPECT_EQ(run(search, 3), (std::vector<int>{3, 1, 2, 3}));
  EXPECT_EQ(rolled_back_count(search.final_config()), 3);
  EXPECT_EQ(search.trials(), search.max_trials());
}

TEST(RollbackSearch, RollingBackEveryLayerEndsWithoutATrial) {
  RollbackSearch search(scores(3), {false, 0.3}, {true, 0.0});
  EXPECT_EQ(run(search, 3), (std::vector<int>{2}));
  EXPECT_EQ(search.outcome(), RollbackSearch::Outcome::kAllRolledBack);
  EXPECT_EQ(rolled_back_count(search.final_config()), 3);
  // The last record is the float model against itself.
  EXPECT_TRUE(search.history().back().metric.satisfied);
  EXPECT_EQ(rolled_back_count(search.history().back().config), 3);
  RollbackSearch single(scores(1), {false, 0.3}, {true, 0.0});
  EXPECT_EQ(single.outcome(), RollbackSearch::Outcome::kAllRolledBack);
  EXPECT_EQ(single.trials(), 0);
}

TEST(RollbackSearch, FindsTheFewestRollbacksThatSatisfyWithinTheBound) {
  for (int n = 1; n <= 40; ++n) {
    for (int needed = 1; needed <= n; ++needed) {
      RollbackSearch search(scores(n), {false, 1.0}, {true, 0.0});
      const std::vector<int> trials = run(search, needed);
      EXPECT_LE(static_cast<int>(trials.size()), search.max_trials()) << n << " layers, " << needed << " needed";
      if (needed == n) {
        EXPECT_EQ(search.outcome(), RollbackSearch::Outcome::kAllRolledBack) << n;
      } else {
        EXPECT_EQ(search.outcome(), RollbackSearch::Outcome::kPartialRollback) << n << " " << needed;
        EXPECT_EQ(rolled_back_count(search.final_config()), needed) << n << " layers, " << needed << " needed";
        // The saved model is the last trial's.
        EXPECT_EQ(trials.back(), needed);
      }
    }
  }
}

TEST(RollbackSearch, ReportAfterTheEndIsAnError) {
  RollbackSearch search(scores(2), {true, 0.0}, {true, 0.0});
  EXPECT_THROW(search.report({true, 0.0}), Error);
  EXPECT_THROW(search.proposal(), Error);
  EXPECT_THROW(RollbackSearch({}, {false, 0.0}, {true, 0.0}), Error);
}

}  // namespace
}  // namespace amct
