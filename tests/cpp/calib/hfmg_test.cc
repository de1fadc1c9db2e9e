#include "amct/calib/hfmg.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "amct/error.h"

namespace amct {
namespace {

ActivationQuantParams hfmg_params(bool asymmetric, int num_bits = 8, int bins = 4096) {
  ActivationQuantParams p;
  p.act_algo = "hfmg";
  p.asymmetric = asymmetric;
  p.num_bits = num_bits;
  p.num_of_bins = bins;
  return p;
}

std::vector<float> gaussian(size_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// The sliced (multi-threaded) kernel counts exactly what one slice and the
// plain reference count, slice boundaries falling anywhere in a ReLU's run
// of zeros included.
TEST(Hfmg, SlicedHistcMatchesOneSliceAndReference) {
  std::vector<float> v = gaussian(1200001, 1.0f, 11);
  for (float& x : v) x = std::clamp(x, 0.0f, 4.0f);
  std::vector<int64_t> plain(4096, 0);
  hfmg_histc_reference(v, 0.0, 4.0, plain);
  for (const size_t slices : {size_t{1}, size_t{2}, size_t{3}, size_t{0}}) {
    std::vector<int64_t> sliced(4096, 7);  // counts are added to what is there
    hfmg_histc(v, 0.0, 4.0, sliced, slices);
    for (int64_t& c : sliced) c -= 7;
    EXPECT_EQ(sliced, plain) << slices << " slices";
  }
}

TEST(Hfmg, HistcKernelMatchesReference) {
  std::vector<float> v = gaussian(100003, 2.0f, 5);
  for (float& x : v) x = std::clamp(x, -8.0f, 8.0f);
  v.push_back(-100.0f);  // outside the edges: skipped, as torch does
  v.push_back(NAN);
  for (int i = -5; i <= 5; ++i) v.push_back(static_cast<float>(i) * 0.5f);  // on bin edges
  for (const int bins : {1024, 4096, 1000}) {
    std::vector<int64_t> fast(static_cast<size_t>(bins), 0);
    std::vector<int64_t> plain(static_cast<size_t>(bins), 0);
    hfmg_histc(v, -8.0, 8.0, fast);
    hfmg_histc_reference(v, -8.0, 8.0, plain);
    EXPECT_EQ(fast, plain) << bins << " bins";
    int64_t total = 0;
    for (const int64_t c : fast) total += c;
    EXPECT_EQ(total, static_cast<int64_t>(v.size()) - 2);
  }
}

TEST(Hfmg, HistcPutsMaxInLastBinAndWidensEmptyRange) {
  std::vector<int64_t> counts(4, 0);
  hfmg_histc(std::vector<float>{0.0f, 0.25f, 0.5f, 0.99f, 1.0f}, 0.0, 1.0, counts);
  EXPECT_EQ(counts, (std::vector<int64_t>{1, 1, 1, 2}));
  std::vector<int64_t> constant(4, 0);
  hfmg_histc(std::vector<float>{3.0f, 3.0f}, 3.0, 3.0, constant);  // edges [2, 4]
  EXPECT_EQ(constant, (std::vector<int64_t>{0, 0, 2, 0}));
}

TEST(Hfmg, RedistributeSplitsStraddlingBinsWithTruncation) {
  const std::vector<int64_t> counts = {3, 5, 7};
  std::vector<int64_t> out(3, -1);
  // New width 1.5: old [0,1) splits at 0.5 -> 1 | 2; old [1,2) ends on the edge 2.
  hfmg_redistribute(counts, 0.0, 3.0, -1.0, 3.5, out);
  EXPECT_EQ(out, (std::vector<int64_t>{1, 7, 7}));
  // New width 4/3: old [1,2) splits 5 -> int(1.67) = 1 | 4, old [2,3) 7 -> int(4.67) = 4 | 3.
  hfmg_redistribute(counts, 0.0, 3.0, 0.0, 4.0, out);
  EXPECT_EQ(out, (std::vector<int64_t>{4, 8, 3}));
  // A zero-width old histogram lands in the bin of its single value.
  const std::vector<int64_t> point = {0, 9, 0};
  hfmg_redistribute(point, 2.0, 2.0, 0.0, 3.0, out);
  EXPECT_EQ(out, (std::vector<int64_t>{0, 0, 9}));
}

TEST(Hfmg, SearchRangeTrimsTheSparserEnd) {
  const std::vector<int64_t> counts = {0, 0, 5, 5, 5, 5, 0, 1};
  const std::vector<HfmgCandidate> c = hfmg_search_range(counts);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].left, 3);
  EXPECT_EQ(c[0].right, 7);
  EXPECT_EQ(c[1].left, 3);
  EXPECT_EQ(c[1].right, 6);
  EXPECT_EQ(c[2].left, 3);
  EXPECT_EQ(c[2].right, 4);
}

TEST(Hfmg, SearchRangeStepGrowsWithTotal) {
  // 200001 values: step 3, so the walk from the left passes two bins.
  std::vector<int64_t> counts(16, 0);
  counts[0] = 2;
  counts[1] = 2;
  counts[8] = 200001 - 5;
  counts[15] = 1;
  const std::vector<HfmgCandidate> c = hfmg_search_range(counts);
  ASSERT_FALSE(c.empty());
  // Left walk: bins 0-1 pass 4 >= 3 values; right walk: bins 15..8 (the walk
  // passes the bin that completes the step) -> the right end moved more, trim it.
  EXPECT_EQ(c[0].left, 0);
  EXPECT_EQ(c[0].right, 7);
}

TEST(Hfmg, CandidateLossByHand) {
  const std::vector<int64_t> counts = {2, 0, 0, 0};
  // Destination bins coincide with source bins: 2 values uniform over a unit cell, 2/12.
  EXPECT_FLOAT_EQ(hfmg_candidate_loss(counts, 1.0, {0, 3}, 2), 1.0f / 6.0f);
  // Candidate (1, 2): dst width 0.5; source bin 0 spans [-1, 0) and is clamped to
  // dst bin 0 (center 0.25): 2·((-0.25)³ - (-1.25)³)/3.
  EXPECT_FLOAT_EQ(hfmg_candidate_loss(counts, 1.0, {1, 2}, 2), 2.0f * (1.953125f - 0.015625f) / 3.0f);
  EXPECT_EQ(hfmg_candidate_loss(counts, 1e-9, {0, 3}, 2), 0.0f);
}

// Histograms the moment-based loss must agree on: smooth bodies, outliers far
// outside every candidate (clamped into the outer destination bins), spikes,
// sparse bins, counts large enough that i²·count passes int64, bin counts that
// are not powers of two, and destination bins narrower than source bins.
struct LossCase {
  std::string name;
  std::vector<int64_t> counts;
  int num_bits;
};

std::vector<LossCase> loss_cases() {
  std::vector<LossCase> cases;
  std::mt19937 rng(21);
  auto histogram = [&](size_t bins, float sigma, int64_t total) {
    std::vector<int64_t> counts(bins, 0);
    std::normal_distribution<double> normal(static_cast<double>(bins) / 2.0, sigma);
    for (int64_t k = 0; k < total; ++k) {
      const auto at = static_cast<int64_t>(normal(rng));
      if (at >= 0 && at < static_cast<int64_t>(bins)) ++counts[static_cast<size_t>(at)];
    }
    return counts;
  };
  cases.push_back({"gaussian", histogram(4096, 300.0f, 200000), 8});
  std::vector<int64_t> tails = histogram(4096, 40.0f, 300000);
  tails[0] = 3;
  tails[4095] = 1;
  tails[17] = 2;
  cases.push_back({"far outliers", tails, 8});
  std::vector<int64_t> relu = histogram(4096, 900.0f, 500000);
  std::fill(relu.begin(), relu.begin() + 2048, 0);
  relu[2048] = 4000000;  // the zeros after a ReLU
  cases.push_back({"relu spike", relu, 8});
  std::vector<int64_t> sparse(4096, 0);
  std::uniform_int_distribution<int> bin(0, 4095);
  for (int k = 0; k < 300; ++k) sparse[static_cast<size_t>(bin(rng))] += 1 + k % 3;
  cases.push_back({"sparse", sparse, 8});
  std::vector<int64_t> huge = histogram(4096, 500.0f, 100000);
  for (int64_t& c : huge) c *= int64_t{1} << 40;
  cases.push_back({"counts past exact double moments", huge, 8});
  cases.push_back({"1000 bins, 4 bits", histogram(1000, 120.0f, 100000), 4});
  cases.push_back({"4096 bins, 16 bits", histogram(4096, 700.0f, 100000), 16});
  std::vector<int64_t> flat(4096, 25);
  cases.push_back({"flat", flat, 8});
  return cases;
}

TEST(Hfmg, MomentLossMatchesBinByBinLoss) {
  for (const LossCase& c : loss_cases()) {
    const HfmgMoments moments(c.counts);
    std::vector<HfmgCandidate> candidates = hfmg_search_range(c.counts);
    candidates.push_back({0, static_cast<int64_t>(c.counts.size()) - 1});
    for (const double bin_width : {1e-3, 0.37, 5.0}) {
      double worst = 0.0;
      for (const HfmgCandidate& candidate : candidates) {
        const double fast = moments.candidate_loss(bin_width, candidate, c.num_bits);
        const double plain = hfmg_candidate_loss(c.counts, bin_width, candidate, c.num_bits);
        worst = std::max(worst, std::fabs(fast - plain) / plain);
      }
      // The reference's float32 rounding, well inside hfmg_best_candidate's
      // recheck margin of 1e-2.
      EXPECT_LT(worst, 3e-4) << c.name << ", bin width " << bin_width;
    }
  }
  const std::vector<int64_t> counts = {2, 0, 0, 0};
  EXPECT_DOUBLE_EQ(HfmgMoments(counts).candidate_loss(1.0, {1, 2}, 2), 2.0 * (1.953125 - 0.015625) / 3.0);
  EXPECT_EQ(HfmgMoments(counts).candidate_loss(1e-9, {0, 3}, 2), 0.0);
}

TEST(Hfmg, BestCandidateMatchesReference) {
  std::vector<LossCase> cases = loss_cases();
  // Exact ties: a histogram symmetric about its centre makes trimming either
  // end cost the same; the reference keeps the first such candidate.
  std::vector<int64_t> symmetric(4096, 0);
  for (size_t i = 0; i < 2048; ++i) symmetric[i] = symmetric[4095 - i] = static_cast<int64_t>(i % 7 + (i > 1500 ? 90 : 1));
  cases.push_back({"symmetric", symmetric, 8});
  std::mt19937 rng(5);
  for (int k = 0; k < 20; ++k) {
    std::vector<int64_t> counts(4096, 0);
    std::lognormal_distribution<double> spread(0.0, 1.5);
    const double sigma = 50.0 + 400.0 * static_cast<double>(k) / 20.0;
    std::normal_distribution<double> normal(2048.0 + 30.0 * k, sigma);
    for (int v = 0; v < 100000; ++v) {
      const double x = normal(rng) * (v % 97 == 0 ? spread(rng) : 1.0);
      const auto at = std::clamp<int64_t>(static_cast<int64_t>(x), 0, 4095);
      ++counts[static_cast<size_t>(at)];
    }
    cases.push_back({"random " + std::to_string(k), counts, 8});
  }
  for (const LossCase& c : cases) {
    const std::vector<HfmgCandidate> candidates = hfmg_search_range(c.counts);
    if (candidates.empty()) continue;
    for (const double bin_width : {1e-3, 0.37}) {
      const HfmgCandidate fast = hfmg_best_candidate(c.counts, bin_width, candidates, c.num_bits);
      const HfmgCandidate plain = hfmg_best_candidate_reference(c.counts, bin_width, candidates, c.num_bits);
      EXPECT_EQ(fast.left, plain.left) << c.name;
      EXPECT_EQ(fast.right, plain.right) << c.name;
    }
  }
}

TEST(Hfmg, UniformDataKeepsItsRange) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-1.0f, 3.0f);
  std::vector<float> v(400000);
  for (float& x : v) x = uniform(rng);
  HfmgCollector collector(hfmg_params(true));
  collector.observe(v);
  const ScaleOffset so = collector.finalize();
  EXPECT_NEAR(so.scale * 255.0f / 4.0f, 1.0f, 0.03f);
  EXPECT_NEAR(static_cast<float>(so.offset), -128.0f + 1.0f / so.scale, 2.0f);
}

TEST(Hfmg, HeavyTailsAreClipped) {
  const std::vector<float> v = gaussian(400000, 1.0f, 12);
  std::vector<float> tailed = v;
  for (size_t i = 0; i < tailed.size(); i += 1000) tailed[i] *= 50.0f;
  const auto [lo, hi] = std::minmax_element(tailed.begin(), tailed.end());
  const float range_scale = std::max(std::fabs(*lo), std::fabs(*hi)) / 127.0f;
  HfmgCollector collector(hfmg_params(false));
  collector.observe(tailed);
  const ScaleOffset so = collector.finalize();
  // Clipping near 0.7 of the range balances the 0.1% outliers' clipping error
  // against the rounding error of the body.
  EXPECT_LT(so.scale, 0.8f * range_scale);
  EXPECT_GT(so.scale, 0.4f * range_scale);
  EXPECT_EQ(so.offset, 0);

  std::mt19937 rng(13);
  std::exponential_distribution<float> exponential(1.0f);
  std::vector<float> laplace(400000);
  for (size_t i = 0; i < laplace.size(); ++i) laplace[i] = (i % 2 ? 1.0f : -1.0f) * exponential(rng);
  const auto [llo, lhi] = std::minmax_element(laplace.begin(), laplace.end());
  HfmgCollector laplace_collector(hfmg_params(false));
  laplace_collector.observe(laplace);
  EXPECT_LT(laplace_collector.finalize().scale, 0.9f * std::max(-*llo, *lhi) / 127.0f);

  HfmgCollector plain(hfmg_params(false));
  plain.observe(v);
  const auto [glo, ghi] = std::minmax_element(v.begin(), v.end());
  const float gaussian_range = std::max(std::fabs(*glo), std::fabs(*ghi)) / 127.0f;
  EXPECT_LE(plain.finalize().scale, 1.01f * gaussian_range);
  EXPECT_GT(plain.finalize().scale, 0.4f * gaussian_range);
}

TEST(Hfmg, CollectorMergesLikeTheSpec) {
  const std::vector<float> first = gaussian(10000, 1.0f, 1);
  const std::vector<float> second = gaussian(10000, 3.0f, 2);
  HfmgCollector collector(hfmg_params(true, 8, 1024));
  collector.observe(first);
  collector.observe(second);
  const auto [lo1, hi1] = std::minmax_element(first.begin(), first.end());
  const auto [lo2, hi2] = std::minmax_element(second.begin(), second.end());
  const float lo = std::min(*lo1, *lo2);
  const float hi = std::max(*hi1, *hi2);
  std::vector<int64_t> old_counts(1024, 0);
  hfmg_histc(first, *lo1, *hi1, old_counts);
  std::vector<int64_t> merged(1024, 0);
  hfmg_redistribute(old_counts, *lo1, *hi1, lo, hi, merged);
  hfmg_histc(second, lo, hi, merged);
  const ScaleOffset expected = hfmg_scale_offset(merged, lo, hi, true, 8);
  EXPECT_EQ(collector.finalize().scale, expected.scale);
  EXPECT_EQ(collector.finalize().offset, expected.offset);

  // A batch within the current range is simply added.
  HfmgCollector same(hfmg_params(true, 8, 1024));
  same.observe(first);
  same.observe(first);
  std::vector<int64_t> doubled(1024, 0);
  hfmg_histc(first, *lo1, *hi1, doubled);
  hfmg_histc(first, *lo1, *hi1, doubled);
  EXPECT_EQ(same.finalize().scale, hfmg_scale_offset(doubled, *lo1, *hi1, true, 8).scale);
}

TEST(Hfmg, DegenerateInputs) {
  for (const bool asym : {true, false}) {
    HfmgCollector zeros(hfmg_params(asym));
    zeros.observe(std::vector<float>(1000, 0.0f));
    zeros.observe(std::vector<float>(10, 0.0f));
    EXPECT_EQ(zeros.finalize().scale, 1.0f);
    EXPECT_EQ(zeros.finalize().offset, asym ? -128 : 0);
  }
  HfmgCollector constant(hfmg_params(true));
  constant.observe(std::vector<float>(1000, 3.0f));
  EXPECT_FLOAT_EQ(constant.finalize().scale, 3.0f / 255.0f);
  EXPECT_EQ(constant.finalize().offset, -128);
  HfmgCollector negative(hfmg_params(false));
  negative.observe(std::vector<float>(1000, -2.0f));
  // max == min == -2: the negative side does not dominate, divisor 127.
  EXPECT_FLOAT_EQ(negative.finalize().scale, 2.0f / 127.0f);
  // A constant first batch, then a spread one.
  HfmgCollector later(hfmg_params(true, 8, 1024));
  later.observe(std::vector<float>(1000, 0.5f));
  later.observe(gaussian(1000, 1.0f, 3));
  const ScaleOffset so = later.finalize();
  EXPECT_TRUE(std::isfinite(so.scale));
  EXPECT_GT(so.scale, 0.0f);
}

TEST(Hfmg, RejectsBadInput) {
  HfmgCollector collector(hfmg_params(true));
  std::vector<float> v(10, 1.0f);
  v[3] = INFINITY;
  try {
    collector.observe(v);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kRuntime);
    EXPECT_NE(std::string(e.what()).find("inf or nan"), std::string::npos);
  }
  EXPECT_THROW(collector.finalize(), Error);
  EXPECT_THROW(HfmgCollector(hfmg_params(true, 8, 2)), Error);
}

}  // namespace
}  // namespace amct
