#include "amct/calib/parallel_slices.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace amct {
namespace {

TEST(ParallelSlices, CoversEveryIndexOnceOnAlignedBoundaries) {
  for (const size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1001}}) {
    for (const size_t slices : {size_t{1}, size_t{2}, size_t{3}, size_t{8}}) {
      std::vector<int> hits(n, 0);
      std::vector<std::pair<size_t, size_t>> ranges(slices);
      run_slices(n, slices, 4, [&](size_t slice, size_t begin, size_t end) {
        ranges[slice] = {begin, end};
        for (size_t i = begin; i < end; ++i) ++hits[i];
      });
      EXPECT_EQ(std::vector<int>(n, 1), hits) << n << " values, " << slices << " slices";
      for (size_t s = 0; s < slices; ++s) {
        if (ranges[s].first < n) EXPECT_EQ(ranges[s].first % 4, 0u);
        if (s > 0) EXPECT_EQ(ranges[s].first, ranges[s - 1].second);
      }
      EXPECT_EQ(ranges.back().second, n);
    }
  }
}

TEST(ParallelSlices, RethrowsAWorkersException) {
  EXPECT_THROW(run_slices(100, 3, 1,
                          [](size_t slice, size_t, size_t) {
                            if (slice == 2) throw std::runtime_error("slice 2");
                          }),
               std::runtime_error);
}

TEST(ParallelSlices, DefaultSlicesKeepSmallBatchesOnOneThread) {
  EXPECT_EQ(default_slices(0), 1u);
  EXPECT_EQ(default_slices(kMinSliceValues - 1), 1u);
  EXPECT_LE(default_slices(size_t{1} << 30), kMaxSlices);
  EXPECT_GE(default_slices(size_t{1} << 30), 1u);
}

TEST(ParallelSlices, RunEachCallsEveryIndexOnceAndRethrowsTheLowest) {
  for (const size_t n : {size_t{0}, size_t{1}, size_t{37}}) {
    std::vector<int> hits(n, 0);
    run_each(n, [&](size_t i) { ++hits[i]; });
    EXPECT_EQ(std::vector<int>(n, 1), hits) << n << " tasks";
  }
  try {
    run_each(10, [](size_t i) {
      if (i == 3 || i == 7) throw std::runtime_error("task " + std::to_string(i));
    });
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "task 3");
  }
}

// The thread count is OpenMP's, which torch.set_num_threads sets when the
// core runs inside torch's process.
TEST(ParallelSlices, ThreadsFollowOpenMpsLimit) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  EXPECT_EQ(available_threads(), 1u);
  EXPECT_EQ(default_slices(size_t{1} << 30), 1u);
  omp_set_num_threads(3);
  EXPECT_EQ(available_threads(), 3u);
  EXPECT_EQ(default_slices(size_t{1} << 30), 3u);
  EXPECT_EQ(default_slices(2 * kMinSliceValues), 2u);
  omp_set_num_threads(before);
}

}  // namespace
}  // namespace amct
