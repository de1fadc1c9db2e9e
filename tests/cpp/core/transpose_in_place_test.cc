#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "amct/error.h"
#include "amct/weight_layout.h"

namespace amct {
namespace {

std::vector<float> counting(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.5f);
  return v;
}

TEST(TransposeInPlace, MatchesTheCopyingTransposeForEveryShape) {
  // Square (tiled swaps, across tile edges at 64) and other shapes (cycles).
  const std::pair<int64_t, int64_t> shapes[] = {{0, 3}, {1, 1}, {1, 7}, {7, 1}, {2, 2}, {3, 5},  {5, 3},
                                                {4, 6}, {64, 64}, {65, 65}, {130, 130}, {17, 129}, {129, 17}};
  for (const auto& [rows, cols] : shapes) {
    std::vector<float> values = counting(rows * cols);
    const std::vector<float> expected = transpose_2d(values, rows, cols);
    transpose_2d_in_place(values, rows, cols);
    EXPECT_EQ(values, expected) << rows << "x" << cols;
  }
}

TEST(TransposeInPlace, RejectsDimsThatDoNotMatchTheValues) {
  std::vector<float> values = counting(6);
  try {
    transpose_2d_in_place(values, 4, 2);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "transpose of 6 values as a [4, 2] matrix: the sizes disagree");
  }
}

}  // namespace
}  // namespace amct
