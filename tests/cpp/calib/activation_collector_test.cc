#include "amct/calib/activation_collector.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "amct/error.h"

namespace amct {
namespace {

std::vector<float> batch_of(size_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.3f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

ActivationQuantParams params_for(const std::string& algo, int num_bits, bool asymmetric) {
  ActivationQuantParams p;
  p.act_algo = algo;
  p.num_bits = num_bits;
  p.asymmetric = asymmetric;
  return p;
}

TEST(CalibCollector, StateIsTheSameAfterOneAnd32Batches) {
  for (const char* algo : {"ifmr", "hfmg"}) {
    // 32 x 100000 values: IFMR's percentile ranks exceed 1, so it also keeps extremes.
    auto collector = make_activation_collector(params_for(algo, 8, true), 32);
    collector->observe(batch_of(100000, 1.0f, 0));
    const size_t after_one = collector->state_bytes();
    for (uint32_t b = 1; b < 32; ++b) collector->observe(batch_of(100000, 1.0f + 0.2f * static_cast<float>(b), b));
    EXPECT_EQ(collector->state_bytes(), after_one) << algo;
    EXPECT_GT(after_one, 0u);
    EXPECT_TRUE(std::isfinite(collector->finalize().scale));
  }
}

TEST(CalibCollector, AllBitWidthsGiveSaneScales) {
  const std::vector<float> v = batch_of(50000, 2.0f, 9);
  for (const char* algo : {"ifmr", "hfmg"})
    for (const bool asym : {true, false})
      for (const int bits : {4, 8, 16}) {
        auto collector = make_activation_collector(params_for(algo, bits, asym), 1);
        collector->observe(v);
        const ScaleOffset so = collector->finalize();
        const double levels = asym ? std::ldexp(1.0, bits) - 1.0 : std::ldexp(1.0, bits - 1) - 1.0;
        const double span = asym ? 0.3 + 2.0 * 2.0 * 4.5 : 0.3 + 2.0 * 4.5;
        EXPECT_GT(so.scale, 0.0f);
        EXPECT_LT(so.scale * levels, 1.5 * span) << algo << " " << bits << " bits";
        EXPECT_GT(so.scale * levels, 0.2 * span) << algo << " " << bits << " bits";
        if (asym) {
          EXPECT_GE(so.offset, -(1 << (bits - 1)));
          EXPECT_LE(so.offset, (1 << (bits - 1)) - 1);
        } else {
          EXPECT_EQ(so.offset, 0);
        }
      }
}

TEST(CalibCollector, UnknownAlgorithmIsRejected) {
  EXPECT_THROW(make_activation_collector(params_for("kl", 8, true), 1), Error);
  EXPECT_THROW(make_activation_collector(params_for("ifmr", 17, true), 1).reset(), Error);
}

}  // namespace
}  // namespace amct
