#include "amct/weights_fingerprint.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "amct/error.h"
#include "amct/file_io.h"

namespace amct {
namespace {

constexpr int kVersion = 1;
constexpr size_t kMaxBytes = 4096;
constexpr uint64_t kFnvPrime = 1099511628211ull;

}  // namespace

void WeightsFingerprint::add_bytes(const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) hash_ = (hash_ ^ bytes[i]) * kFnvPrime;
}

void WeightsFingerprint::add_layer(std::string_view name, std::span<const float> weight) {
  // The lengths keep ("ab", w) and ("a", "b"+w) apart.
  const uint64_t name_size = name.size(), weight_size = weight.size();
  add_bytes(&name_size, sizeof name_size);
  add_bytes(name.data(), name.size());
  add_bytes(&weight_size, sizeof weight_size);
  add_bytes(weight.data(), weight.size_bytes());
}

std::string WeightsFingerprint::hex() const {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash_));
  return text;
}

std::string record_sidecar_path(const std::string& record_file) { return record_file + ".amct.json"; }

std::string record_sidecar_json(const std::string& fingerprint) {
  nlohmann::ordered_json root;
  root["version"] = kVersion;
  root["weights_fingerprint"] = fingerprint;
  return root.dump(2) + "\n";
}

std::optional<std::string> read_record_fingerprint(const std::string& record_file) {
  const std::string path = record_sidecar_path(record_file);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  const std::string text = read_file(path, "record sidecar");
  const std::string where = "record sidecar '" + path + "': ";
  // What we write is about 60 bytes; the cap also bounds the nesting depth.
  if (text.size() > kMaxBytes)
    invalid(where + "is " + std::to_string(text.size()) + " bytes; expected at most " + std::to_string(kMaxBytes));
  const nlohmann::json root = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) invalid(where + "not a JSON object");
  const auto version = root.find("version");
  if (version == root.end() || !version->is_number_integer() || version->get<int64_t>() != kVersion)
    invalid(where + "\"version\" must be " + std::to_string(kVersion));
  const auto fingerprint = root.find("weights_fingerprint");
  if (fingerprint == root.end() || !fingerprint->is_string())
    invalid(where + "\"weights_fingerprint\" must be a string");
  return fingerprint->get<std::string>();
}

void set_model_fingerprint(onnx::ModelProto& model, const std::string& fingerprint) {
  for (auto& prop : *model.mutable_metadata_props())
    if (prop.key() == kWeightsFingerprintKey) {
      prop.set_value(fingerprint);
      return;
    }
  auto* prop = model.add_metadata_props();
  prop->set_key(std::string(kWeightsFingerprintKey));
  prop->set_value(fingerprint);
}

std::optional<std::string> model_fingerprint(const onnx::ModelProto& model) {
  for (const auto& prop : model.metadata_props())
    if (prop.key() == kWeightsFingerprintKey) return prop.value();
  return std::nullopt;
}

void check_same_run(const onnx::ModelProto& model, const std::string& modified_onnx_file,
                    const std::string& record_file) {
  const std::optional<std::string> in_model = model_fingerprint(model);
  if (!in_model) return;
  const std::optional<std::string> in_record = read_record_fingerprint(record_file);
  if (!in_record || *in_record == *in_model) return;
  invalid("modified ONNX file '" + modified_onnx_file + "' and record file '" + record_file +
          "' come from different quantize_model runs: the weights fingerprint is " + *in_model + " in the model and " +
          *in_record + " in '" + record_sidecar_path(record_file) +
          "'; use the record written together with this modified ONNX");
}

}  // namespace amct
