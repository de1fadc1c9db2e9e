#include "amct/weight_layout.h"

namespace amct {
namespace {

// Views the weight as [g, a, b, k] and swaps the a and b axes.
std::vector<float> swap_group_axes(std::span<const float> w, int64_t groups, int64_t a, int64_t b) {
  const int64_t kernel = static_cast<int64_t>(w.size()) / (groups * a * b);
  std::vector<float> out(w.size());
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < b; ++j) {
        const float* src = w.data() + ((g * a + i) * b + j) * kernel;
        float* dst = out.data() + ((g * b + j) * a + i) * kernel;
        for (int64_t k = 0; k < kernel; ++k) dst[k] = src[k];
      }
  return out;
}

}  // namespace

std::vector<float> deconv_to_cout_major(std::span<const float> weight, const std::vector<int64_t>& dims, int64_t groups) {
  return swap_group_axes(weight, groups, dims[0] / groups, dims[1]);
}

std::vector<float> cout_major_to_deconv(std::span<const float> weight, const std::vector<int64_t>& dims, int64_t groups) {
  return swap_group_axes(weight, groups, dims[1], dims[0] / groups);
}

std::vector<float> transpose_2d(std::span<const float> values, int64_t rows, int64_t cols) {
  std::vector<float> out(values.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = values[r * cols + c];
  return out;
}

}  // namespace amct
