#include "amct/calib/batch_scan.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "amct/calib/parallel_slices.h"

namespace amct {
namespace {

// Chunk by chunk, branch-free in the inner loop so that it vectorizes.
__attribute__((target_clones("avx2", "default"))) int64_t scan_chunks(const float* values, size_t n, size_t chunk,
                                                                      int32_t* key_min, int32_t* key_max) {
  int64_t zeros = 0;
  for (size_t c = 0, start = 0; start < n; ++c, start += chunk) {
    const size_t end = std::min(n, start + chunk);
    int32_t lo = INT32_MAX;
    int32_t hi = INT32_MIN;
    int32_t chunk_zeros = 0;
    for (size_t i = start; i < end; ++i) {
      const int32_t key = float_order_key(values[i]);
      lo = key < lo ? key : lo;
      hi = key > hi ? key : hi;
      chunk_zeros += values[i] == 0.0f ? 1 : 0;
    }
    key_min[c] = lo;
    key_max[c] = hi;
    zeros += chunk_zeros;
  }
  return zeros;
}

}  // namespace

void scan_batch(std::span<const float> values, size_t chunk, BatchScan& out) {
  const size_t chunks = (values.size() + chunk - 1) / chunk;
  out.chunk_min.resize(chunks);
  out.chunk_max.resize(chunks);
  // The keys are written over the float vectors and converted in place.
  auto* key_min = reinterpret_cast<int32_t*>(out.chunk_min.data());
  auto* key_max = reinterpret_cast<int32_t*>(out.chunk_max.data());
  // Slices are whole chunks, so each writes its own chunks' extremes.
  const size_t slices = default_slices(values.size());
  std::vector<int64_t> zeros(slices, 0);
  run_slices(values.size(), slices, chunk, [&](size_t slice, size_t begin, size_t end) {
    zeros[slice] = scan_chunks(values.data() + begin, end - begin, chunk, key_min + begin / chunk, key_max + begin / chunk);
  });
  out.zeros = 0;
  for (const int64_t z : zeros) out.zeros += z;
  int32_t lo = INT32_MAX;
  int32_t hi = INT32_MIN;
  for (size_t c = 0; c < chunks; ++c) {
    lo = std::min(lo, key_min[c]);
    hi = std::max(hi, key_max[c]);
    out.chunk_min[c] = float_from_order_key(key_min[c]);
    out.chunk_max[c] = float_from_order_key(key_max[c]);
  }
  out.range.finite = lo > float_order_key(-INFINITY) && hi < float_order_key(INFINITY);
  out.range.min = float_from_order_key(lo);
  out.range.max = float_from_order_key(hi);
}

void scan_batch_reference(std::span<const float> values, size_t chunk, BatchScan& out) {
  out.range = scan_value_range_reference(values);
  out.zeros = 0;
  out.chunk_min.clear();
  out.chunk_max.clear();
  for (size_t start = 0; start < values.size(); start += chunk) {
    const auto part = values.subspan(start, std::min(chunk, values.size() - start));
    out.chunk_min.push_back(*std::min_element(part.begin(), part.end()));
    out.chunk_max.push_back(*std::max_element(part.begin(), part.end()));
    for (const float x : part) out.zeros += x == 0.0f ? 1 : 0;
  }
}

}  // namespace amct
