#include "amct/calib/parallel_slices.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <vector>

namespace amct {

size_t available_threads() { return static_cast<size_t>(std::max(omp_get_max_threads(), 1)); }

size_t default_slices(size_t n) {
  return std::clamp<size_t>(n / kMinSliceValues, 1, std::min(available_threads(), kMaxSlices));
}

void run_slices(size_t n, size_t slices, size_t align, const std::function<void(size_t, size_t, size_t)>& fn) {
  slices = std::max<size_t>(slices, 1);
  align = std::max<size_t>(align, 1);
  // Equal shares rounded up to `align`; trailing slices may be empty.
  const size_t share = ((n + slices - 1) / slices + align - 1) / align * align;
  auto bounds = [&](size_t s) { return std::pair{std::min(n, s * share), std::min(n, (s + 1) * share)}; };
  // An exception must not leave an OpenMP region: each slice keeps its own.
  std::vector<std::exception_ptr> errors(slices);
  auto run = [&](size_t s) {
    try {
      const auto [begin, end] = bounds(s);
      fn(s, begin, end);
    } catch (...) {
      errors[s] = std::current_exception();
    }
  };
  if (slices == 1) {
    run(0);
  } else {
    // One slice per team thread; the calling thread is thread 0 and so runs slice 0.
#pragma omp parallel for num_threads(static_cast<int>(slices)) schedule(static, 1)
    for (size_t s = 0; s < slices; ++s) run(s);
  }
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
}

void run_each(size_t n, const std::function<void(size_t)>& fn) {
  std::vector<std::exception_ptr> errors(n);
  const auto count = static_cast<int64_t>(n);
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
  for (int64_t i = 0; i < count; ++i) {
    try {
      fn(static_cast<size_t>(i));
    } catch (...) {
      errors[static_cast<size_t>(i)] = std::current_exception();
    }
  }
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
}

}  // namespace amct
