#include "amct/calib/extreme_values.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

namespace amct {
namespace {

TEST(CalibExtremeValues, KthLargestAndSmallestOverBatches) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> all;
  ExtremeValues top(50, true);
  ExtremeValues bottom(50, false);
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<float> values(20000);
    for (float& v : values) v = normal(rng) * static_cast<float>(batch + 1);
    top.observe(values);
    bottom.observe(values);
    all.insert(all.end(), values.begin(), values.end());
  }
  std::vector<float> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  for (const int64_t rank : {1, 2, 17, 50}) {
    ASSERT_TRUE(top.holds(rank));
    EXPECT_EQ(top.value_at(rank), sorted[sorted.size() - static_cast<size_t>(rank)]);
    EXPECT_EQ(bottom.value_at(rank), sorted[static_cast<size_t>(rank) - 1]);
  }
  EXPECT_FALSE(top.holds(51));
  const std::vector<float> largest(sorted.rbegin(), sorted.rbegin() + 50);
  const std::vector<float> smallest(sorted.begin(), sorted.begin() + 50);
  EXPECT_EQ(top.most_extreme(), largest);
  EXPECT_EQ(bottom.most_extreme(), smallest);
  ExtremeValues few(50, true);
  few.observe(std::vector<float>{2.0f, 7.0f, 1.0f});
  EXPECT_EQ(few.most_extreme(), (std::vector<float>{7.0f, 2.0f, 1.0f}));
}

TEST(CalibExtremeValues, AscendingInputAndTies) {
  ExtremeValues top(3, true);
  std::vector<float> values;
  for (int i = 0; i < 1000; ++i) values.push_back(static_cast<float>(i / 10));
  top.observe(values);
  EXPECT_EQ(top.value_at(1), 99.0f);
  EXPECT_EQ(top.value_at(3), 99.0f);
  ExtremeValues few(10, true);
  few.observe(std::vector<float>{2.0f, 1.0f});
  EXPECT_TRUE(few.holds(2));
  EXPECT_FALSE(few.holds(3));
  EXPECT_EQ(few.value_at(2), 1.0f);
}

TEST(CalibExtremeValues, StateDoesNotGrow) {
  ExtremeValues top(8, true);
  std::vector<float> values(4096);
  std::iota(values.begin(), values.end(), 0.0f);
  top.observe(values);
  const size_t bytes = top.state_bytes();
  for (int i = 0; i < 10; ++i) {
    for (float& v : values) v += 4096.0f;
    top.observe(values);
  }
  EXPECT_EQ(top.state_bytes(), bytes);
  EXPECT_EQ(top.value_at(8), 4096.0f * 11.0f - 8.0f);
}

}  // namespace
}  // namespace amct
