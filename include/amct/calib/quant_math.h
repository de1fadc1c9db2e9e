// Shared quantization arithmetic (docs/amct-reference.md#scale-and-offset-helpers). Rounding is half-to-even
// everywhere, as in AMCT (torch.round / np.round / ONNX Round).
#pragma once

#include <cmath>
#include <cstdint>

namespace amct {

constexpr float kFltEpsilon = 1.192092896e-07f;

struct ScaleOffset {
  float scale = 1.0f;
  int32_t offset = 0;
};

inline float round_half_even(float x) { return std::nearbyint(x); }
inline double round_half_even(double x) { return std::nearbyint(x); }

inline int64_t quant_min(int num_bits) { return -(int64_t{1} << (num_bits - 1)); }
inline int64_t quant_max(int num_bits) { return (int64_t{1} << (num_bits - 1)) - 1; }

// Rejects bit widths the quantization formulas cannot express (2..16 bits).
void check_num_bits(int num_bits);

// process_scale of docs/amct-reference.md#scale-and-offset-helpers for the scale alone: below FLT_EPS it becomes 1.0;
// an inf/nan scale (or one whose reciprocal overflows) throws kRuntime.
float process_scale(float scale);

// calculate_scale_offset of docs/amct-reference.md#scale-and-offset-helpers ("min-max"), including process_scale.
ScaleOffset calculate_scale_offset(float max_value, float min_value, bool asymmetric, int num_bits);

}  // namespace amct
