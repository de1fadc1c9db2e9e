#include "amct/calib/ifmr_bin_loss.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "amct/calib/ifmr.h"
#include "amct/calib/moment_histogram.h"

namespace amct {
namespace {

MomentBins bins_of(const std::vector<float>& values) {
  MomentHistogram histogram;
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  histogram.add(values, *lo, *hi);
  return {histogram.first_index(), histogram.bin_width(), histogram.counts(), histogram.position_sums(),
          histogram.square_sums()};
}

std::vector<float> relu6_like(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.5f, 1.5f);
  std::vector<float> v(n);
  for (float& x : v) x = std::clamp(normal(rng), 0.0f, 6.0f);
  return v;
}

std::vector<float> heavy_tailed(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) {
    const float y = normal(rng);
    x = y * y * y;
  }
  return v;
}

// The cell sums are the bin-by-bin sums up to rounding, for IFMR's own
// candidates (clip ranges from 70% to 130% of the data's) at 8 and 4 bits.
TEST(IfmrBinLoss, CellSumsMatchBinByBin) {
  for (const auto& values : {relu6_like(400000, 1), heavy_tailed(400000, 2)}) {
    const IfmrBinLoss loss(bins_of(values));
    const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
    for (const int bits : {8, 4}) {
      ActivationQuantParams params;
      params.num_bits = bits;
      const IfmrCandidates candidates = ifmr_candidates(*hi, *lo, params);
      ASSERT_FALSE(candidates.scales.empty());
      for (size_t i = 0; i < candidates.scales.size(); ++i) {
        const double reference = loss.bin_by_bin(candidates.clip_min[i], candidates.clip_max[i], candidates.scales[i]);
        const double fast = loss.by_cells(candidates.clip_min[i], candidates.clip_max[i], candidates.scales[i]);
        ASSERT_GT(reference, 0.0);
        EXPECT_NEAR(fast, reference, 1e-9 * reference) << bits << " bits, candidate " << i;
      }
    }
  }
}

// A step finer than a bin leaves nothing to sum by cells: the two agree exactly.
TEST(IfmrBinLoss, FineStepsFallBackToBinByBin) {
  const std::vector<float> values = relu6_like(100000, 3);
  const IfmrBinLoss loss(bins_of(values));
  const float step = 1e-5f;  // the histogram's bins are about 6/8192 wide
  EXPECT_EQ(loss.by_cells(0.0f, 6.0f, step), loss.bin_by_bin(0.0f, 6.0f, step));
}

// Clip ranges that cut into the data on both sides, and ones far outside it.
TEST(IfmrBinLoss, ClippedAndWideRangesMatchBinByBin) {
  const std::vector<float> values = heavy_tailed(300000, 4);
  const IfmrBinLoss loss(bins_of(values));
  for (const auto& [lo, hi] : {std::pair{-0.5f, 0.7f}, std::pair{-40.0f, 55.0f}, std::pair{-3.0f, 0.0f}}) {
    const float scale = (hi - lo) / 255.0f;
    const double reference = loss.bin_by_bin(lo, hi, scale);
    EXPECT_NEAR(loss.by_cells(lo, hi, scale), reference, 1e-9 * reference) << lo << " " << hi;
  }
}

}  // namespace
}  // namespace amct
