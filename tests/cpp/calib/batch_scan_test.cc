#include "amct/calib/batch_scan.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "amct/calib/extreme_values.h"

namespace amct {
namespace {

std::vector<float> relu_like(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.2f, 2.0f);
  std::vector<float> values(n);
  for (float& v : values) v = std::max(normal(rng), 0.0f);
  return values;
}

void expect_same_scan(const std::vector<float>& values, size_t chunk) {
  BatchScan fast;
  BatchScan plain;
  scan_batch(values, chunk, fast);
  scan_batch_reference(values, chunk, plain);
  ASSERT_EQ(fast.range.finite, plain.range.finite);
  if (!plain.range.finite) return;
  EXPECT_EQ(fast.range.min, plain.range.min);
  EXPECT_EQ(fast.range.max, plain.range.max);
  EXPECT_EQ(fast.zeros, plain.zeros);
  EXPECT_EQ(fast.chunk_min, plain.chunk_min);
  EXPECT_EQ(fast.chunk_max, plain.chunk_max);
}

TEST(CalibBatchScan, MatchesReference) {
  for (const size_t n : {1u, 255u, 256u, 257u, 100003u}) {
    std::vector<float> values = relu_like(n, static_cast<uint32_t>(n));
    for (const size_t chunk : {1u, 7u, 256u}) expect_same_scan(values, chunk);
    values[n / 2] = -0.0f;
    values[0] = -std::numeric_limits<float>::denorm_min();
    expect_same_scan(values, 256);
  }
  BatchScan scan;
  scan_batch(std::vector<float>{0.0f, -0.0f, 3.0f, 0.0f, -1.5f}, 2, scan);
  EXPECT_EQ(scan.zeros, 3);
  EXPECT_EQ(scan.range.min, -1.5f);
  EXPECT_EQ(scan.range.max, 3.0f);
  EXPECT_EQ(scan.chunk_max, (std::vector<float>{0.0f, 3.0f, -1.5f}));
}

TEST(CalibBatchScan, DetectsNonFinite) {
  for (const float bad : {INFINITY, -INFINITY, NAN, -NAN}) {
    std::vector<float> values = relu_like(1000, 3);
    values[700] = bad;
    BatchScan scan;
    scan_batch(values, 256, scan);
    EXPECT_FALSE(scan.range.finite);
  }
}

// ExtremeValues fed the scan's chunk extremes keeps exactly what it keeps
// when it reads every chunk itself, batch after batch.
TEST(CalibBatchScan, ChunkExtremesFeedExtremeValuesExactly) {
  for (const bool largest : {true, false}) {
    ExtremeValues plain(300, largest);
    ExtremeValues scanned(300, largest);
    BatchScan scan;
    for (uint32_t batch = 0; batch < 6; ++batch) {
      std::vector<float> values = relu_like(50000 + batch * 1000, batch + 10);
      if (!largest)
        for (float& v : values) v = -v * static_cast<float>(batch % 3 + 1);
      plain.observe(values);
      scan_batch(values, 256, scan);
      scanned.observe(values, largest ? scan.chunk_max : scan.chunk_min, 256);
    }
    EXPECT_EQ(scanned.most_extreme(), plain.most_extreme());
    EXPECT_EQ(scanned.value_at(300), plain.value_at(300));
  }
}

}  // namespace
}  // namespace amct
