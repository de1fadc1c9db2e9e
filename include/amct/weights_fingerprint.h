// Links a modified ONNX to the record written in the same quantize_model run.
// Both get a fingerprint of the quantized weights: the modified ONNX in its
// metadata_props (key "amct.weights_fingerprint"), the record in a sidecar
// "<record_file>.amct.json", because the record itself must stay exactly
// the text AMCT reads. save_model refuses a pair whose fingerprints differ;
// a pair without them (AMCT's own files) is accepted as before.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "onnx/onnx.pb.h"

namespace amct {

inline constexpr std::string_view kWeightsFingerprintKey = "amct.weights_fingerprint";

// 64-bit FNV-1a over each quantized layer's name and the float32 bytes of its
// weight as written to the modified ONNX, in record order.
class WeightsFingerprint {
 public:
  void add_layer(std::string_view name, std::span<const float> weight);
  std::string hex() const;  // 16 lowercase hex digits

 private:
  void add_bytes(const void* data, size_t size);
  uint64_t hash_ = 14695981039346656037ull;  // FNV offset basis
};

std::string record_sidecar_path(const std::string& record_file);
// {"version": 1, "weights_fingerprint": "<hex>"}
std::string record_sidecar_json(const std::string& fingerprint);
// The fingerprint in the sidecar beside `record_file`; nullopt when there is
// no sidecar. A sidecar that cannot be read or parsed is an error naming it.
std::optional<std::string> read_record_fingerprint(const std::string& record_file);

void set_model_fingerprint(onnx::ModelProto& model, const std::string& fingerprint);
std::optional<std::string> model_fingerprint(const onnx::ModelProto& model);

// Throws kInvalidArgument naming both files when both carry a fingerprint and
// they differ.
void check_same_run(const onnx::ModelProto& model, const std::string& modified_onnx_file,
                    const std::string& record_file);

}  // namespace amct
