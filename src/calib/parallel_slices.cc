#include "amct/calib/parallel_slices.h"

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

namespace amct {

size_t default_slices(size_t n) {
  const size_t hardware = std::max<size_t>(std::thread::hardware_concurrency(), 1);
  return std::clamp<size_t>(n / kMinSliceValues, 1, std::min(hardware, kMaxSlices));
}

void run_slices(size_t n, size_t slices, size_t align, const std::function<void(size_t, size_t, size_t)>& fn) {
  slices = std::max<size_t>(slices, 1);
  align = std::max<size_t>(align, 1);
  // Equal shares rounded up to `align`; trailing slices may be empty.
  const size_t share = ((n + slices - 1) / slices + align - 1) / align * align;
  auto bounds = [&](size_t s) { return std::pair{std::min(n, s * share), std::min(n, (s + 1) * share)}; };
  std::vector<std::exception_ptr> errors(slices);
  auto run = [&](size_t s) {
    try {
      const auto [begin, end] = bounds(s);
      fn(s, begin, end);
    } catch (...) {
      errors[s] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(slices - 1);
  for (size_t s = 1; s < slices; ++s) workers.emplace_back(run, s);
  run(0);
  for (auto& worker : workers) worker.join();
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
}

}  // namespace amct
