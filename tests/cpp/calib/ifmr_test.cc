#include "amct/calib/ifmr.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <utility>
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

enum class Shape { kGaussian, kLaplace, kRelu, kOutliers, kUniform, kPixels };

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
    case Shape::kUniform:
      return "uniform";
    case Shape::kPixels:
      return "pixels";
  }
  return "";
}

// One batch; `spread` and `shift` vary per batch so later batches leave the
// first batch's range. kPixels is image data: uint8 values k/255, normalized
// with a mean and std as in torchvision (only 256 distinct values).
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
      case Shape::kUniform:
        x = (uniform(rng) - 0.3f) * spread + shift;
        break;
      case Shape::kPixels: {
        const float level = std::clamp(std::round((0.45f + 0.25f * normal(rng)) * 255.0f), 0.0f, 255.0f);
        x = (level / 255.0f - 0.485f) / 0.229f;
        break;
      }
    }
  }
  return v;
}

struct Layout {
  std::vector<size_t> sizes;
  std::vector<float> spreads;
  std::vector<float> shifts;
};

// The reference's loss for one candidate, and a bound on how far float32
// arithmetic may have moved it from the real-number loss: the step value q
// and the difference q - x are each rounded to float32, so an error is off by
// at most u = one ulp of max(|x|, |q|) and its square by 2|e|·u + u²; the
// final float32 mean adds one rounding.
struct ReferenceLoss {
  double loss = 0.0;
  double bound = 0.0;
};

ReferenceLoss reference_loss(std::span<const float> all, const IfmrCandidates& candidates, size_t i) {
  ReferenceLoss r;
  const float scale = candidates.scales[i];
  for (const float x : all) {
    const float q = round_half_even(std::clamp(x, candidates.clip_min[i], candidates.clip_max[i]) / scale) * scale;
    const float error = q - x;
    const float magnitude = std::max(std::fabs(q), std::fabs(x));
    const double ulp = magnitude == 0.0f ? 0.0 : std::ldexp(1.0, std::ilogb(magnitude) - 23);
    r.loss += static_cast<double>(error * error);
    r.bound += 2.0 * std::fabs(static_cast<double>(error)) * ulp + ulp * ulp;
  }
  const auto n = static_cast<double>(all.size());
  r.loss /= n;
  r.bound = r.bound / n + r.loss * std::ldexp(1.0, -24);
  return r;
}

// The streamed scale/offset must equal the exact one, except for a tie the
// float32 reference cannot resolve: the streamed choice is then the
// neighbouring candidate and the two reference losses differ by less than
// the sum of their float32 error bounds (reference_loss).
void expect_same_or_float32_tie(std::span<const float> all, const ActivationQuantParams& params,
                                const ScaleOffset& streamed, const ScaleOffset& exact, const std::string& what) {
  if (streamed.scale == exact.scale && streamed.offset == exact.offset) return;
  std::vector<float> sorted(all.begin(), all.end());
  const auto n = static_cast<int64_t>(all.size());
  const auto kth_max = sorted.begin() + (ifmr_percentile_rank(n, params.max_percentile) - 1);
  std::nth_element(sorted.begin(), kth_max, sorted.end(), std::greater<float>());
  const float max_value = *kth_max;
  const auto kth_min = sorted.begin() + (ifmr_percentile_rank(n, params.min_percentile) - 1);
  std::nth_element(sorted.begin(), kth_min, sorted.end());
  const IfmrCandidates candidates = ifmr_candidates(max_value, *kth_min, params);
  const auto& scales = candidates.scales;
  const auto exact_at = static_cast<size_t>(std::find(scales.begin(), scales.end(), exact.scale) - scales.begin());
  const auto streamed_at =
      static_cast<size_t>(std::find(scales.begin(), scales.end(), streamed.scale) - scales.begin());
  ASSERT_LT(streamed_at, scales.size()) << what << ": streamed scale " << streamed.scale << " is no candidate";
  ASSERT_LE(std::max(exact_at, streamed_at) - std::min(exact_at, streamed_at), 1u)
      << what << ": exact scale " << exact.scale << ", streamed " << streamed.scale;
  const ReferenceLoss chosen = reference_loss(all, candidates, exact_at);
  const ReferenceLoss other = reference_loss(all, candidates, streamed_at);
  EXPECT_LE(other.loss - chosen.loss, chosen.bound + other.bound)
      << what << ": exact scale " << exact.scale << " (loss " << chosen.loss << "), streamed " << streamed.scale
      << " (loss " << other.loss << ")";
  EXPECT_EQ(streamed.offset, ifmr_result(candidates, streamed_at, params).offset) << what;
}

std::string describe(const std::string& data, const ActivationQuantParams& params, size_t batches, size_t n) {
  return data + (params.asymmetric ? " asymmetric" : " symmetric") + ", " + std::to_string(batches) +
         " batches, " + std::to_string(n) + " values, " + std::to_string(params.num_bits) + " bits";
}

void expect_streaming_matches_exact(Shape shape, const Layout& layout, const ActivationQuantParams& params) {
  std::mt19937 rng(1234);
  IfmrCollector collector(params, static_cast<int64_t>(layout.sizes.size()));
  std::vector<float> all;
  for (size_t b = 0; b < layout.sizes.size(); ++b) {
    const std::vector<float> batch = make_batch(shape, layout.sizes[b], layout.spreads[b], layout.shifts[b], rng);
    collector.observe(batch);
    all.insert(all.end(), batch.begin(), batch.end());
  }
  expect_same_or_float32_tie(all, params, collector.finalize(), ifmr_exact(all, params),
                             describe(shape_name(shape), params, layout.sizes.size(), all.size()));
}

// 12000 values: more than the kept extremes, so the histogram is used.
const Layout kSmall{{12000}, {1.0f}, {0.2f}};
const Layout kOneBatch{{200000}, {1.0f}, {0.2f}};
const Layout kGrowingBatches{{50000, 50000, 50000, 50000}, {1.0f, 1.7f, 0.6f, 3.0f}, {0.0f, 0.5f, -0.4f, 1.0f}};
const Layout kEightBatches{{20000, 20000, 20000, 20000, 20000, 20000, 20000, 20000},
                           {0.5f, 0.7f, 1.0f, 1.4f, 2.0f, 2.8f, 4.0f, 5.6f},
                           {0.0f, 0.1f, -0.2f, 0.3f, -0.4f, 0.5f, 0.6f, -0.7f}};
// 1.2M values: the 0.999999 percentiles are the 2nd largest/smallest.
const Layout kMillion{{400000, 400000, 400000}, {1.0f, 2.0f, 1.5f}, {0.1f, -0.3f, 0.6f}};

class IfmrCollectorVsExact : public ::testing::TestWithParam<std::tuple<Shape, bool, int>> {
 protected:
  void expect_matches(const Layout& layout) {
    const auto [shape, asymmetric, bits] = GetParam();
    expect_streaming_matches_exact(shape, layout, ifmr_params(asymmetric, bits));
  }
};

TEST_P(IfmrCollectorVsExact, SmallBatch) { expect_matches(kSmall); }

TEST_P(IfmrCollectorVsExact, OneBatch) { expect_matches(kOneBatch); }

TEST_P(IfmrCollectorVsExact, GrowingBatches) { expect_matches(kGrowingBatches); }

TEST_P(IfmrCollectorVsExact, EightGrowingBatches) { expect_matches(kEightBatches); }

TEST_P(IfmrCollectorVsExact, OverAMillionValues) {
  // 4 bits has no fine-step model to exercise here; the million-value runs
  // dominate the test time.
  if (std::get<2>(GetParam()) == 4) GTEST_SKIP();
  expect_matches(kMillion);
}

INSTANTIATE_TEST_SUITE_P(Distributions, IfmrCollectorVsExact,
                         ::testing::Combine(::testing::Values(Shape::kGaussian, Shape::kLaplace, Shape::kRelu,
                                                              Shape::kOutliers, Shape::kUniform, Shape::kPixels),
                                            ::testing::Bool(), ::testing::Values(4, 8, 16)));

TEST(IfmrCollector, Int16LayersLikeTheIssue) {
  // Activations of a few units at 16 bits give scales near 1e-4: a
  // batch-normalized layer, its ReLU, a residual sum and raw uint8 pixels.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> byte(0, 255);
  const std::vector<std::pair<std::string, std::function<float()>>> layers = {
      {"bn", [&] { return 1.2f * normal(rng) + 0.1f; }},
      {"relu", [&] { return std::max(0.0f, 1.5f * normal(rng) - 0.2f); }},
      {"residual", [&] { return normal(rng) + std::max(0.0f, 1.5f * normal(rng)); }},
      {"pixels", [&] { return static_cast<float>(byte(rng)) / 255.0f; }},
  };
  for (const auto& [name, draw] : layers)
    for (const bool asymmetric : {true, false}) {
      const ActivationQuantParams params = ifmr_params(asymmetric, 16);
      IfmrCollector collector(params, 4);
      std::vector<float> all;
      for (int b = 0; b < 4; ++b) {
        std::vector<float> batch(60000);
        for (float& x : batch) x = draw();
        collector.observe(batch);
        all.insert(all.end(), batch.begin(), batch.end());
      }
      const ScaleOffset exact = ifmr_exact(all, params);
      if (name != "pixels") {
        EXPECT_GT(exact.scale, 5e-5f) << name;
        EXPECT_LT(exact.scale, 5e-4f) << name;
      }
      expect_same_or_float32_tie(all, params, collector.finalize(), exact, describe(name, params, 4, all.size()));
    }
}

TEST(IfmrCollector, NarrowSearchRange) {
  ActivationQuantParams narrow = ifmr_params(false);
  narrow.search_range_start = 0.8;
  narrow.search_range_end = 1.2;
  narrow.search_step = 0.02;
  for (const int bits : {8, 16}) {
    narrow.num_bits = bits;
    expect_streaming_matches_exact(Shape::kOutliers, kGrowingBatches, narrow);
  }
}

TEST(IfmrCollector, PercentileBeyondExactRankComesFromHistogram) {
  // k = 100000 > kMaxExactRank: both percentiles are read from the histogram,
  // which only approximates them, so the candidates themselves may differ.
  ActivationQuantParams p = ifmr_params(true);
  p.max_percentile = 0.9;
  p.min_percentile = 0.95;
  for (const Shape shape : {Shape::kLaplace, Shape::kGaussian}) {
    std::mt19937 rng(1234);
    IfmrCollector collector(p, 2);
    std::vector<float> all;
    for (const auto& [spread, shift] : {std::pair(1.0f, 0.0f), std::pair(1.3f, 0.2f)}) {
      const std::vector<float> batch = make_batch(shape, 500000, spread, shift, rng);
      collector.observe(batch);
      all.insert(all.end(), batch.begin(), batch.end());
    }
    const ScaleOffset exact = ifmr_exact(all, p);
    const ScaleOffset streamed = collector.finalize();
    EXPECT_NEAR(streamed.scale / exact.scale, 1.0, 0.01) << shape_name(shape);
    EXPECT_LE(std::abs(streamed.offset - exact.offset), 1) << shape_name(shape);
  }
}

TEST(IfmrCollector, ShorterLastBatch) {
  for (const int bits : {8, 16})
    expect_streaming_matches_exact(Shape::kOutliers, {{600000, 600000, 10000}, {1.0f, 1.0f, 1.0f}, {0.f, 0.f, 0.f}},
                                   ifmr_params(true, bits));
}

TEST(IfmrCollector, StateDoesNotGrowWithBatches) {
  IfmrCollector collector(ifmr_params(true, 16), 20);
  std::mt19937 rng(5);
  size_t after_first = 0;
  for (int b = 0; b < 20; ++b) {
    collector.observe(make_batch(Shape::kGaussian, 20000, 1.0f + 0.1f * static_cast<float>(b), 0.0f, rng));
    if (b == 0) after_first = collector.state_bytes();
  }
  EXPECT_LE(collector.state_bytes(), after_first);
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
