// The integer format of a quantized tensor: how many bits, signed or not, and
// how ONNX stores it. AMCT's record names formats "INT4", "INT8", "INT16";
// this type is the one place that builds and parses those names and knows the
// integer range and the unsigned storage shift.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace amct {

class QuantFormat {
 public:
  QuantFormat() = default;  // INT8, the default of every record field
  // Signed integers of `bits` bits (2..16), AMCT's only kind.
  static QuantFormat signed_bits(int bits);
  // The format named by a record or config string ("INT8"), if it is one of
  // `allowed` bit widths.
  static std::optional<QuantFormat> parse(std::string_view name, std::initializer_list<int> allowed);

  int bits() const { return bits_; }
  bool is_signed() const { return true; }
  int64_t min() const { return -(int64_t{1} << (bits_ - 1)); }
  int64_t max() const { return (int64_t{1} << (bits_ - 1)) - 1; }
  // "INT8", as AMCT writes act_type / wts_type / dst_type.
  std::string name() const { return "INT" + std::to_string(bits_); }

  // ONNX TensorProto data type that holds the integers as they are (INT8
  // for 2..8 bits, INT16 for 9..16); 4-bit values are packed separately.
  int32_t onnx_storage_type() const;
  // The same integers shifted into the unsigned type of the storage width
  // (value + 2^(storage bits - 1)): ONNX Runtime's fast x86 kernels take
  // UINT8 activations, so an INT8 zero point z becomes z + 128 on UINT8.
  int32_t onnx_unsigned_storage_type() const;
  int64_t unsigned_shift() const;

  bool operator==(const QuantFormat&) const = default;

 private:
  explicit QuantFormat(int bits) : bits_(bits) {}
  int bits_ = 8;
};

// The allowed bit widths as AMCT lists them in messages: "INT4", "INT8".
std::string format_names(std::initializer_list<int> allowed);

}  // namespace amct
