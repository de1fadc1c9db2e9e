#pragma once

#include <cstddef>
#include <functional>

namespace amct {

// The fewest values one slice gets: below this, handing a slice to another
// thread of the OpenMP team (a few microseconds) costs more than the share
// of the work it takes over.
inline constexpr size_t kMinSliceValues = size_t{1} << 16;
// The most slices a batch is cut into, whatever the hardware offers.
inline constexpr size_t kMaxSlices = 8;

// Threads a parallel pass may use: OpenMP's limit. Inside the Python package
// the OpenMP runtime is the one torch loaded, so torch.set_num_threads (and
// OMP_NUM_THREADS) sets it, and the slices run on the workers torch's own ops
// run on instead of competing with them.
size_t available_threads();

// How many slices a pass over n values uses: one per available thread (at
// most kMaxSlices), each of at least kMinSliceValues values.
size_t default_slices(size_t n);

// Runs fn(slice, begin, end) on `slices` contiguous slices of [0, n) in one
// OpenMP parallel region, slice 0 on the calling thread, and returns when all
// are done (rethrowing the first slice's exception). Slice boundaries are
// multiples of `align`. The callers' kernels merge per-slice integer counts
// in slice order, so results do not depend on the slicing.
void run_slices(size_t n, size_t slices, size_t align, const std::function<void(size_t, size_t, size_t)>& fn);

// Runs fn(i) for every i in [0, n) on the OpenMP team, each index handed to
// the next free thread (for tasks of uneven cost), and returns when all are
// done (rethrowing the exception of the lowest index that threw).
void run_each(size_t n, const std::function<void(size_t)>& fn);

}  // namespace amct
