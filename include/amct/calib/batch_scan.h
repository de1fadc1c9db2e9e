// The one pass IFMR makes over a batch before its histogram: the range with
// the finiteness check, the count of exact zeros, and each chunk's min and
// max, from which ExtremeValues tells without reading the chunk again whether
// it holds a value to keep. Folding these into one read of the batch matters
// because activations are larger than the caches: each separate pass costs a
// trip through memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "amct/calib/value_range.h"

namespace amct {

struct BatchScan {
  ValueRange range;
  int64_t zeros = 0;
  // Min and max of values [c·kChunk, (c + 1)·kChunk), the last chunk short.
  // Meaningless when !range.finite.
  std::vector<float> chunk_min;
  std::vector<float> chunk_max;
};

// `values` must be non-empty; `out`'s vectors are reused.
void scan_batch(std::span<const float> values, size_t chunk, BatchScan& out);
// Element by element, the test reference for scan_batch.
void scan_batch_reference(std::span<const float> values, size_t chunk, BatchScan& out);

}  // namespace amct
