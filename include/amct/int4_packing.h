// The deploy model's INT4 weights (docs/amct-reference.md#int16-and-int4-notes):
// AMCT stores two signed 4-bit values in each byte, paired along the weight's
// input-channel axis, in an INT8 tensor whose input-channel axis is halved.
// quantize_model checks that a layer can be packed before calibration, and
// the deploy pass packs; both ask here, so they agree on the axis.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "amct/layer_kind.h"
#include "onnx/onnx.pb.h"

namespace amct {

// The input-channel axis of a weight of `layout`: Conv 1; ConvTranspose and
// MatMul 0; Gemm 1 when trans_b, else 0; LSTM/GRU 2. -1 for kNone.
int int4_pack_axis(WeightLayout layout, bool trans_b);
// The same for a layer node (transB read from it).
int int4_pack_axis(const onnx::NodeProto& node);

// Why layer `node` with weight dims `dims` cannot hold packed INT4 weights
// (its input-channel axis is odd), or "" when it can.
std::string int4_unpackable_reason(const onnx::NodeProto& node, const std::vector<int64_t>& dims);

struct PackedInt4 {
  std::vector<int64_t> dims;  // `dims` with the pack axis halved
  std::string bytes;          // one byte per pair, row-major over `dims`
};

// Packs `values` (each in [-8, 7], row-major over `dims`) in pairs along
// `axis`: byte = (v[2j] & 0xF) | ((v[2j+1] & 0xF) << 4), the even index in
// the low nibble. dims[axis] must be even (kInvalidArgument otherwise).
PackedInt4 pack_int4(std::span<const int32_t> values, std::span<const int64_t> dims, int axis);

}  // namespace amct
