#include "amct/int4_packing.h"

#include "amct/error.h"
#include "amct/layer_graph.h"
#include "amct/onnx_graph.h"

namespace amct {

int int4_pack_axis(WeightLayout layout, bool trans_b) {
  switch (layout) {
    case WeightLayout::kOutFirst: return 1;
    case WeightLayout::kDeconv: return 0;
    case WeightLayout::kInOut: return 0;
    case WeightLayout::kGemm: return trans_b ? 1 : 0;
    case WeightLayout::kGates: return 2;
    case WeightLayout::kNone: break;
  }
  return -1;
}

int int4_pack_axis(const onnx::NodeProto& node) {
  const OpKind* kind = node_kind(node);
  return kind ? int4_pack_axis(kind->layout, get_int_attribute(node, "transB", 0) != 0) : -1;
}

std::string int4_unpackable_reason(const onnx::NodeProto& node, const std::vector<int64_t>& dims) {
  const int axis = int4_pack_axis(node);
  if (axis < 0 || axis >= static_cast<int>(dims.size()) || dims[static_cast<size_t>(axis)] % 2 == 0) return "";
  return "INT4 weights are packed two per byte along the input-channel axis (axis " + std::to_string(axis) +
         " of the " + node.op_type() + " weight, dims " + dims_text(dims) + "), whose size " +
         std::to_string(dims[static_cast<size_t>(axis)]) + " is odd";
}

PackedInt4 pack_int4(std::span<const int32_t> values, std::span<const int64_t> dims, int axis) {
  if (axis < 0 || axis >= static_cast<int>(dims.size()))
    invalid("INT4 packing axis " + std::to_string(axis) + " is outside the weight's dims " + dims_text(dims));
  const int64_t channels = dims[static_cast<size_t>(axis)];
  if (channels % 2 != 0)
    invalid("INT4 packing needs an even size on axis " + std::to_string(axis) + "; the weight's dims are " +
            dims_text(dims));
  int64_t outer = 1;
  int64_t inner = 1;
  for (int i = 0; i < static_cast<int>(dims.size()); ++i) {
    if (i < axis) outer *= dims[static_cast<size_t>(i)];
    if (i > axis) inner *= dims[static_cast<size_t>(i)];
  }
  if (outer * channels * inner != static_cast<int64_t>(values.size()))
    invalid("INT4 packing: " + std::to_string(values.size()) + " values do not match the dims " + dims_text(dims));
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i] < -8 || values[i] > 7)
      invalid("INT4 packing: value " + std::to_string(values[i]) + " at element " + std::to_string(i) +
              " is outside [-8, 7]");
  PackedInt4 out;
  out.dims.assign(dims.begin(), dims.end());
  out.dims[static_cast<size_t>(axis)] = channels / 2;
  out.bytes.resize(static_cast<size_t>(outer * (channels / 2) * inner));
  size_t next = 0;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t pair = 0; pair < channels / 2; ++pair)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t even = (o * channels + 2 * pair) * inner + i;
        const auto low = static_cast<uint8_t>(values[static_cast<size_t>(even)] & 0xF);
        const auto high = static_cast<uint8_t>(values[static_cast<size_t>(even + inner)] & 0xF);
        out.bytes[next++] = static_cast<char>(low | (high << 4));
      }
  return out;
}

}  // namespace amct
