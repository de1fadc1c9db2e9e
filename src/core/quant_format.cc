#include "amct/quant_format.h"

#include "amct/error.h"
#include "onnx/onnx.pb.h"

namespace amct {

QuantFormat QuantFormat::signed_bits(int bits) {
  if (bits < 2 || bits > 16) invalid("num_bits " + std::to_string(bits) + " is not supported; expected 2 to 16");
  return QuantFormat(bits);
}

std::optional<QuantFormat> QuantFormat::parse(std::string_view name, std::initializer_list<int> allowed) {
  for (int bits : allowed)
    if (name == "INT" + std::to_string(bits)) return QuantFormat(bits);
  return std::nullopt;
}

int32_t QuantFormat::onnx_storage_type() const {
  return bits_ <= 8 ? onnx::TensorProto::INT8 : onnx::TensorProto::INT16;
}

int32_t QuantFormat::onnx_unsigned_storage_type() const {
  return bits_ <= 8 ? onnx::TensorProto::UINT8 : onnx::TensorProto::UINT16;
}

int64_t QuantFormat::unsigned_shift() const { return bits_ <= 8 ? 128 : 32768; }

std::string format_names(std::initializer_list<int> allowed) {
  std::string out;
  for (int bits : allowed) out += (out.empty() ? "\"INT" : ", \"INT") + std::to_string(bits) + "\"";
  return out;
}

}  // namespace amct
