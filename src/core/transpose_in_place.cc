// In-place transpose of a row-major matrix, so that a layer's weight of GBs
// changes layout without a second copy of it.
// A square matrix swaps across the diagonal, tile by tile (both tiles stay
// in cache). Any other shape follows the permutation's cycles: element i of
// the [rows, cols] matrix goes to i * rows mod (n - 1), and a bitmap (one
// bit per element, 1/32 of the data) marks the elements already moved.
#include <algorithm>
#include <vector>

#include "amct/error.h"
#include "amct/weight_layout.h"

namespace amct {
namespace {

constexpr int64_t kTile = 64;

void transpose_square(std::span<float> values, int64_t n) {
  for (int64_t r0 = 0; r0 < n; r0 += kTile)
    for (int64_t c0 = r0; c0 < n; c0 += kTile)
      for (int64_t r = r0; r < std::min(r0 + kTile, n); ++r)
        for (int64_t c = std::max(c0, r + 1); c < std::min(c0 + kTile, n); ++c)
          std::swap(values[static_cast<size_t>(r * n + c)], values[static_cast<size_t>(c * n + r)]);
}

void transpose_cycles(std::span<float> values, int64_t rows) {
  const uint64_t last = values.size() - 1;  // the first and last elements stay
  std::vector<bool> moved(values.size(), false);
  for (uint64_t start = 1; start < last; ++start) {
    if (moved[start]) continue;
    // The value at `start` goes to its destination, whose value goes on, until
    // the cycle returns to `start`.
    float carried = values[start];
    uint64_t at = start;
    do {
      const uint64_t to = static_cast<uint64_t>((static_cast<unsigned __int128>(at) * static_cast<uint64_t>(rows)) % last);
      std::swap(carried, values[to]);
      moved[to] = true;
      at = to;
    } while (at != start);
  }
}

}  // namespace

void transpose_2d_in_place(std::span<float> values, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0 || static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) != values.size())
    invalid("transpose of " + std::to_string(values.size()) + " values as a [" + std::to_string(rows) + ", " +
            std::to_string(cols) + "] matrix: the sizes disagree");
  if (values.size() < 3 || rows == 1 || cols == 1) return;  // the order does not change
  if (rows == cols)
    transpose_square(values, rows);
  else
    transpose_cycles(values, rows);
}

}  // namespace amct
