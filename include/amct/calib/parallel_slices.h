#pragma once

#include <cstddef>
#include <functional>

namespace amct {

// The fewest values one slice gets: below this, starting a thread (tens of
// microseconds) costs more than the share of the work it takes over.
inline constexpr size_t kMinSliceValues = size_t{1} << 19;
// The most slices a batch is cut into, whatever the hardware offers.
inline constexpr size_t kMaxSlices = 8;

// How many slices a pass over n values uses: one per hardware thread (at
// most kMaxSlices), each of at least kMinSliceValues values.
size_t default_slices(size_t n);

// Runs fn(slice, begin, end) on `slices` contiguous slices of [0, n), the
// first on the calling thread and the others on threads of their own, and
// returns when all are done (rethrowing the first slice's exception). Slice
// boundaries are multiples of `align`. The callers' kernels merge per-slice
// integer counts in slice order, so results do not depend on the slicing.
void run_slices(size_t n, size_t slices, size_t align, const std::function<void(size_t, size_t, size_t)>& fn);

}  // namespace amct
