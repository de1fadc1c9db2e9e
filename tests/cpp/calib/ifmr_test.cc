#include "amct/calib/ifmr.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "amct/error.h"

namespace amct {
namespace {

ActivationQuantParams ifmr_params(bool asymmetric, int num_bits = 8) {
  ActivationQuantParams p;
  p.asymmetric = asymmetric;
  p.num_bits = num_bits;
  return p;
}

enum class Shape { kGaussian, kLaplace, kRelu, kOutliers };

std::string shape_name(Shape s) {
  switch (s) {
    case Shape::kGaussian:
      return "gaussian";
    case Shape::kLaplace:
      return "laplace";
    case Shape::kRelu:
      return "relu";
    case Shape::kOutliers:
      return "outliers";
  }
  return "";
}

// One batch; `spread` and `shift` vary per batch so later batches leave the
// first batch's range.
std::vector<float> make_batch(Shape shape, size_t n, float spread, float shift, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::exponential_distribution<float> exponential(1.0f / spread);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) {
    switch (shape) {
      case Shape::kGaussian:
        x = normal(rng) + shift;
        break;
      case Shape::kLaplace:
        x = (uniform(rng) < 0.5f ? -1.0f : 1.0f) * exponential(rng) + shift;
        break;
      case Shape::kRelu:
        x = std::max(0.0f, normal(rng) + shift);
        break;
      case Shape::kOutliers:
        x = normal(rng) + shift;
        if (uniform(rng) < 0.001f) x *= 50.0f;
        break;
    }
  }
  return v;
}

struct Layout {
  std::vector<size_t> sizes;
  std::vector<float> spreads;
  std::vector<float> shifts;
};

void expect_streaming_matches_exact(Shape shape, const Layout& layout, const ActivationQuantParams& params) {
  std::mt19937 rng(1234);
  IfmrCollector collector(params, static_cast<int64_t>(layout.sizes.size()));
  std::vector<float> all;
  for (size_t b = 0; b < layout.sizes.size(); ++b) {
    const std::vector<float> batch = make_batch(shape, layout.sizes[b], layout.spreads[b], layout.shifts[b], rng);
    collector.observe(batch);
    all.insert(all.end(), batch.begin(), batch.end());
  }
  const ScaleOffset exact = ifmr_exact(all, params);
  const ScaleOffset streamed = collector.finalize();
  const std::string what = shape_name(shape) + (params.asymmetric ? " asymmetric" : " symmetric") + ", " +
                           std::to_string(layout.sizes.size()) + " batches, " + std::to_string(all.size()) +
                           " values, " + std::to_string(params.num_bits) + " bits";
  EXPECT_NEAR(streamed.scale / exact.scale, 1.0, 0.01) << what;
  EXPECT_LE(std::abs(streamed.offset - exact.offset), 1) << what;
}

const Layout kOneBatch{{200000}, {1.0f}, {0.2f}};
const Layout kGrowingBatches{{50000, 50000, 50000, 50000}, {1.0f, 1.7f, 0.6f, 3.0f}, {0.0f, 0.5f, -0.4f, 1.0f}};
// 1.2M values: the 0.999999 percentiles are the 2nd largest/smallest.
const Layout kMillion{{400000, 400000, 400000}, {1.0f, 2.0f, 1.5f}, {0.1f, -0.3f, 0.6f}};

class IfmrCollectorVsExact : public ::testing::TestWithParam<std::tuple<Shape, bool>> {};

TEST_P(IfmrCollectorVsExact, OneBatch) {
  expect_streaming_matches_exact(std::get<0>(GetParam()), kOneBatch, ifmr_params(std::get<1>(GetParam())));
}

TEST_P(IfmrCollectorVsExact, GrowingBatches) {
  expect_streaming_matches_exact(std::get<0>(GetParam()), kGrowingBatches, ifmr_params(std::get<1>(GetParam())));
}

TEST_P(IfmrCollectorVsExact, OverAMillionValues) {
  expect_streaming_matches_exact(std::get<0>(GetParam()), kMillion, ifmr_params(std::get<1>(GetParam())));
}

INSTANTIATE_TEST_SUITE_P(Distributions, IfmrCollectorVsExact,
                         ::testing::Combine(::testing::Values(Shape::kGaussian, Shape::kLaplace, Shape::kRelu,
                                                              Shape::kOutliers),
                                            ::testing::Bool()));

TEST(IfmrCollector, OtherBitWidthsAndSearchRanges) {
  for (const int bits : {4, 16}) {
    expect_streaming_matches_exact(Shape::kGaussian, kGrowingBatches, ifmr_params(true, bits));
    expect_streaming_matches_exact(Shape::kLaplace, kGrowingBatches, ifmr_params(false, bits));
  }
  ActivationQuantParams narrow = ifmr_params(false);
  narrow.search_range_start = 0.8;
  narrow.search_range_end = 1.2;
  narrow.search_step = 0.02;
  expect_streaming_matches_exact(Shape::kOutliers, kGrowingBatches, narrow);
}

TEST(IfmrCollector, PercentileBeyondExactRankComesFromHistogram) {
  // k = 100000 > kMaxExactRank: both percentiles are read from the histogram.
  ActivationQuantParams p = ifmr_params(true);
  p.max_percentile = 0.9;
  p.min_percentile = 0.95;
  expect_streaming_matches_exact(Shape::kLaplace, {{500000, 500000}, {1.0f, 1.3f}, {0.0f, 0.2f}}, p);
  expect_streaming_matches_exact(Shape::kGaussian, {{500000, 500000}, {1.0f, 1.3f}, {0.0f, 0.2f}}, p);
}

TEST(IfmrCollector, ShorterLastBatch) {
  expect_streaming_matches_exact(Shape::kOutliers, {{600000, 600000, 10000}, {1.0f, 1.0f, 1.0f}, {0.f, 0.f, 0.f}},
                                 ifmr_params(true));
}

TEST(IfmrCollector, RejectsNonFiniteActivations) {
  IfmrCollector collector(ifmr_params(true), 1);
  std::vector<float> v(100, 1.0f);
  v[42] = NAN;
  try {
    collector.observe(v);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kRuntime);
    EXPECT_NE(std::string(e.what()).find("inf or nan"), std::string::npos);
  }
  v[42] = -INFINITY;
  EXPECT_THROW(ifmr_exact(v, ifmr_params(true)), Error);
  EXPECT_THROW(collector.finalize(), Error);
}

TEST(Ifmr, CandidateCountAndValues) {
  const IfmrCandidates c = ifmr_candidates(2.0f, -1.0f, ifmr_params(true));
  ASSERT_EQ(c.scales.size(), 61u);
  EXPECT_EQ(c.clip_max.front(), 0.7f * 2.0f);
  EXPECT_EQ(c.clip_max.back(), static_cast<float>(0.7 + 60 * 0.01) * 2.0f);
  EXPECT_EQ(c.scales.front(), (0.7f * 2.0f + 1.0f) / 255.0f);
  EXPECT_EQ(c.clip_min.front(), -1.0f);
  ActivationQuantParams p = ifmr_params(false);
  p.search_range_start = 0.8;
  p.search_range_end = 1.2;
  p.search_step = 0.02;
  const IfmrCandidates s = ifmr_candidates(1.0f, -2.0f, p);
  ASSERT_EQ(s.scales.size(), 20u);
  EXPECT_EQ(s.scales.front(), 0.8f * 2.0f / 128.0f);
  EXPECT_EQ(s.clip_min.front(), -s.clip_max.front());
}

TEST(Ifmr, PercentileRank) {
  EXPECT_EQ(ifmr_percentile_rank(999999, 0.999999), 1);
  EXPECT_EQ(ifmr_percentile_rank(100, 1.0), 1);
  EXPECT_EQ(ifmr_percentile_rank(100, 0.9), 100 - static_cast<int64_t>(0.9 * 100));
  EXPECT_EQ(ifmr_percentile_rank(3000000, 0.999999), 3000000 - static_cast<int64_t>(0.999999 * 3000000));
}

TEST(Ifmr, ExactOnTinyData) {
  // Values on the grid of the ratio-1.0 candidate quantize without error.
  std::vector<float> v;
  for (int i = 0; i <= 255; ++i) v.push_back(static_cast<float>(i) / 255.0f * 2.0f);
  const ScaleOffset so = ifmr_exact(v, ifmr_params(true));
  EXPECT_EQ(so.scale, static_cast<float>(0.7 + 30 * 0.01) * 2.0f / 255.0f);
  EXPECT_EQ(so.offset, -128);
  IfmrCollector collector(ifmr_params(true), 1);
  collector.observe(v);
  EXPECT_EQ(collector.finalize().scale, so.scale);
}

TEST(Ifmr, AllZerosAndConstants) {
  const std::vector<float> zeros(1000, 0.0f);
  for (const bool asym : {true, false}) {
    const ScaleOffset exact = ifmr_exact(zeros, ifmr_params(asym));
    EXPECT_EQ(exact.scale, 1.0f);
    EXPECT_EQ(exact.offset, asym ? -128 : 0);
    IfmrCollector collector(ifmr_params(asym), 3);
    for (int i = 0; i < 3; ++i) collector.observe(zeros);
    EXPECT_EQ(collector.finalize().scale, 1.0f);
    EXPECT_EQ(collector.finalize().offset, exact.offset);
  }
  const std::vector<float> constant(1000, 3.0f);
  IfmrCollector collector(ifmr_params(true), 1);
  collector.observe(constant);
  EXPECT_EQ(collector.finalize().scale, ifmr_exact(constant, ifmr_params(true)).scale);
}

TEST(Ifmr, RejectsBadParams) {
  ActivationQuantParams p = ifmr_params(true);
  p.search_step = 0.0;
  EXPECT_THROW(IfmrCollector(p, 1), Error);
  p = ifmr_params(true);
  p.search_range_start = 1.5;
  EXPECT_THROW(ifmr_exact(std::vector<float>{1.0f}, p), Error);
  EXPECT_THROW(IfmrCollector(ifmr_params(true), 0), Error);
}

}  // namespace
}  // namespace amct
