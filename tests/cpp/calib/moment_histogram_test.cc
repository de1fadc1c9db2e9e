#include "amct/calib/moment_histogram.h"

#include "amct/calib/parallel_slices.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace amct {
namespace {

std::vector<float> gaussian(size_t n, float mean, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

void add(MomentHistogram& h, const std::vector<float>& v, bool reference) {
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  if (reference)
    h.add_reference(v, *lo, *hi);
  else
    h.add(v, *lo, *hi);
}

// The packed kernel resolves positions to 2^-16 of a bin and truncates.
void expect_close(const MomentHistogram& a, const MomentHistogram& b) {
  ASSERT_EQ(a.bin_width(), b.bin_width());
  ASSERT_EQ(a.first_index(), b.first_index());
  for (int64_t j = 0; j < MomentHistogram::kBins; ++j) {
    ASSERT_EQ(a.counts()[j], b.counts()[j]) << "bin " << j;
    EXPECT_NEAR(a.position_sums()[j], b.position_sums()[j], 1e-9 + a.counts()[j] * std::ldexp(1.0, -16));
    EXPECT_NEAR(a.square_sums()[j], b.square_sums()[j], 1e-9 + a.counts()[j] * std::ldexp(1.0, -15));
  }
}

// Slicing a batch over threads merges integer accumulators, so the sums are
// bit-identical to the one-slice kernel's, and within the kernel's
// resolution of the plain reference.
TEST(CalibMomentHistogram, SlicedKernelIsBitIdenticalToOneSlice) {
  std::vector<float> v = gaussian(1500001, 0.5f, 1.0f, 21);
  for (size_t i = 0; i < v.size(); i += 3) v[i] = 0.0f;  // a ReLU's zeros
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  MomentHistogram one;
  one.add(v, *lo, *hi, 1);
  MomentHistogram reference;
  reference.add_reference(v, *lo, *hi);
  expect_close(one, reference);
  for (const size_t slices : {size_t{2}, size_t{3}, size_t{0}}) {
    MomentHistogram sliced;
    sliced.add(v, *lo, *hi, slices);
    EXPECT_EQ(sliced.counts(), one.counts()) << slices << " slices";
    EXPECT_EQ(sliced.position_sums(), one.position_sums()) << slices << " slices";
    EXPECT_EQ(sliced.square_sums(), one.square_sums()) << slices << " slices";
  }
  // Inside another parallel region the slices' team has one thread, which
  // runs all four slices into its own accumulators: merged once, not four times.
  MomentHistogram nested;
  run_slices(2, 2, 1, [&](size_t slice, size_t, size_t) {
    if (slice == 0) nested.add(v, *lo, *hi, 4);
  });
  EXPECT_EQ(nested.counts(), one.counts());
  EXPECT_EQ(nested.position_sums(), one.position_sums());
  EXPECT_EQ(nested.square_sums(), one.square_sums());
}

// Only the bins between a batch's min and max are merged and cleared; a
// narrow batch after a wide one must neither lose nor repeat counts.
TEST(CalibMomentHistogram, NarrowBatchAfterWideMatchesOnePass) {
  const std::vector<float> wide = gaussian(200000, 0.0f, 4.0f, 5);
  std::vector<float> narrow = gaussian(3000, 1.0f, 0.01f, 6);
  std::vector<float> both = wide;
  both.insert(both.end(), narrow.begin(), narrow.end());
  const auto [lo, hi] = std::minmax_element(both.begin(), both.end());
  MomentHistogram streamed;
  streamed.add(wide, *lo, *hi);
  const auto [nlo, nhi] = std::minmax_element(narrow.begin(), narrow.end());
  streamed.add(narrow, *nlo, *nhi);
  MomentHistogram reference;
  reference.add_reference(both, *lo, *hi);
  expect_close(streamed, reference);
}

TEST(CalibMomentHistogram, KernelMatchesReference) {
  MomentHistogram fast;
  MomentHistogram plain;
  for (uint32_t batch = 0; batch < 4; ++batch) {
    std::vector<float> v = gaussian(30001, 0.3f * static_cast<float>(batch), 1.0f + static_cast<float>(batch), batch);
    for (size_t i = 0; i < v.size(); i += 3) v[i] = std::max(v[i], 0.0f);
    add(fast, v, false);
    add(plain, v, true);
    expect_close(fast, plain);
  }
}

TEST(CalibMomentHistogram, GrowingRangeMatchesSinglePass) {
  const std::vector<float> narrow = gaussian(20000, 0.0f, 0.5f, 1);
  const std::vector<float> wide = gaussian(20000, 3.0f, 40.0f, 2);
  MomentHistogram streamed;
  add(streamed, narrow, true);
  const double narrow_width = streamed.bin_width();
  add(streamed, wide, true);
  EXPECT_GT(streamed.bin_width(), narrow_width);

  std::vector<float> all = narrow;
  all.insert(all.end(), wide.begin(), wide.end());
  MomentHistogram once;
  add(once, all, true);
  ASSERT_EQ(streamed.bin_width(), once.bin_width());
  ASSERT_EQ(streamed.first_index(), once.first_index());
  for (int64_t j = 0; j < MomentHistogram::kBins; ++j) {
    ASSERT_EQ(streamed.counts()[j], once.counts()[j]) << "bin " << j;
    EXPECT_NEAR(streamed.position_sums()[j], once.position_sums()[j], 1e-9 * (1.0 + once.counts()[j]));
    EXPECT_NEAR(streamed.square_sums()[j], once.square_sums()[j], 1e-9 * (1.0 + once.counts()[j]));
  }
}

TEST(CalibMomentHistogram, PositionsAreInBinUnits) {
  MomentHistogram h;
  add(h, {0.0f, 0.25f, 0.75f, 1.0f}, false);
  const double w = h.bin_width();
  double count = 0.0;
  double sum = 0.0;
  double square_sum = 0.0;
  for (int64_t j = 0; j < MomentHistogram::kBins; ++j) {
    const auto start = static_cast<double>(h.first_index() + j);
    count += h.counts()[j];
    sum += (start * h.counts()[j] + h.position_sums()[j]) * w;
    square_sum += (start * start * h.counts()[j] + 2.0 * start * h.position_sums()[j] + h.square_sums()[j]) * w * w;
  }
  EXPECT_EQ(count, 4.0);
  EXPECT_NEAR(sum, 2.0, 1e-12);
  EXPECT_NEAR(square_sum, 0.0625 + 0.5625 + 1.0, 1e-12);
  const auto [bin, position] = h.locate(0.75f);
  EXPECT_EQ(static_cast<double>(h.first_index() + bin) * w + position * w, 0.75);
}

TEST(CalibMomentHistogram, ConstantThenSpreadData) {
  MomentHistogram h;
  add(h, std::vector<float>(100, 0.0f), false);
  add(h, std::vector<float>(100, 5.0f), false);
  add(h, {-1e6f, 1e6f}, false);
  double count = 0.0;
  for (const double c : h.counts()) count += c;
  EXPECT_EQ(count, 202.0);
  EXPECT_GE(h.bin_width() * MomentHistogram::kBins, 2e6);
}

}  // namespace
}  // namespace amct
