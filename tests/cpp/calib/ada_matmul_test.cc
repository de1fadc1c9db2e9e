#include "amct/calib/ada_matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace amct {
namespace {

std::vector<float> uniform(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Shapes that hit the four-row blocks and their remainder, one column, and
// (the last two) enough work for the product to be split over threads.
TEST(AdaMatmul, MatchesTheReference) {
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 9, 37}, {7, 13, 5}, {4, 1, 1}, {6, 3, 1},
                                                      {64, 320, 256}, {1282, 33, 77}};
  for (const auto& [m, k, n] : shapes) {
    SCOPED_TRACE(std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n));
    const std::vector<float> a = uniform(static_cast<size_t>(m * k), 1), x = uniform(static_cast<size_t>(k * n), 2);
    std::vector<float> fast(static_cast<size_t>(m * n), 7.0f), reference(fast.size());
    matmul(a.data(), x.data(), fast.data(), m, k, n);
    matmul_reference(a.data(), x.data(), reference.data(), m, k, n);
    for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], reference[i], 1e-5f * static_cast<float>(k)) << i;
  }
}

}  // namespace
}  // namespace amct
