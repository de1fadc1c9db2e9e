#include "amct/weight_layout.h"

namespace amct {

std::vector<float> transpose_2d(std::span<const float> values, int64_t rows, int64_t cols) {
  std::vector<float> out(values.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = values[r * cols + c];
  return out;
}

}  // namespace amct
