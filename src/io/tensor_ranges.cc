#include "amct/tensor_ranges.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/number_format.h"
#include "amct/text_check.h"

namespace amct {
namespace {

constexpr int kVersion = 1;
// Same nesting limit idea as the config reader: the file is small and flat.
constexpr int kMaxDepth = 8;

TensorRole parse_role(const std::string& text, const std::string& where) {
  for (TensorRole role : {TensorRole::kInput, TensorRole::kRecurrent, TensorRole::kOutput, TensorRole::kTensor})
    if (text == tensor_role_name(role)) return role;
  invalid(where + "role is \"" + shorten_for_message(text) + "\"; expected \"input\", \"recurrent\", \"output\" or \"tensor\"");
}

}  // namespace

const char* tensor_role_name(TensorRole role) {
  switch (role) {
    case TensorRole::kInput: return "input";
    case TensorRole::kRecurrent: return "recurrent";
    case TensorRole::kOutput: return "output";
    case TensorRole::kTensor: return "tensor";
  }
  return "output";
}

std::string tensor_ranges_path(const std::string& record_file) { return record_file + ".ranges.json"; }

std::string tensor_ranges_json(const std::vector<TensorRange>& ranges) {
  nlohmann::ordered_json items = nlohmann::ordered_json::array();
  for (const auto& r : ranges) {
    nlohmann::ordered_json item;
    item["layer"] = r.layer;
    item["role"] = tensor_role_name(r.role);
    item["scale"] = r.scale;
    item["offset"] = r.offset;
    item["bits"] = r.bits;
    items.push_back(std::move(item));
  }
  nlohmann::ordered_json root;
  root["version"] = kVersion;
  root["ranges"] = std::move(items);
  return root.dump(2) + "\n";
}

std::vector<TensorRange> read_tensor_ranges(const std::string& path) {
  return parse_tensor_ranges(read_file(path, "tensor ranges file"), path);
}

std::vector<TensorRange> parse_tensor_ranges(const std::string& text, const std::string& path) {
  check_utf8(text, "tensor ranges file '" + path + "'");
  int depth = 0;
  bool too_deep = false;
  const auto limit_depth = [&](int, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if (event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start)
      too_deep = too_deep || ++depth > kMaxDepth;
    if (event == nlohmann::json::parse_event_t::object_end || event == nlohmann::json::parse_event_t::array_end)
      --depth;
    return !too_deep;
  };
  const nlohmann::json root = nlohmann::json::parse(text, limit_depth, /*allow_exceptions=*/false);
  const std::string file = "tensor ranges file '" + path + "': ";
  if (too_deep) invalid(file + "nested deeper than " + std::to_string(kMaxDepth) + " levels");
  if (root.is_discarded() || !root.is_object()) invalid(file + "not a JSON object");
  const auto version = root.find("version");
  if (version == root.end() || !version->is_number_integer() || *version != kVersion) invalid(file + "\"version\" must be " + std::to_string(kVersion));
  const auto ranges = root.find("ranges");
  if (ranges == root.end() || !ranges->is_array()) invalid(file + "\"ranges\" must be an array");
  std::vector<TensorRange> out;
  for (size_t i = 0; i < ranges->size(); ++i) {
    const nlohmann::json& item = (*ranges)[i];
    const std::string where = file + "entry " + std::to_string(i) + ": ";
    if (!item.is_object() || !item.contains("layer") || !item["layer"].is_string() || !item.contains("role") ||
        !item["role"].is_string() || !item.contains("scale") || !item["scale"].is_number() ||
        !item.contains("offset") || !item["offset"].is_number_integer() || !item.contains("bits") ||
        !item["bits"].is_number_integer())
      invalid(where + "expected {\"layer\": str, \"role\": str, \"scale\": number, \"offset\": int, \"bits\": int}");
    TensorRange r;
    r.layer = item["layer"].get<std::string>();
    r.role = parse_role(item["role"].get<std::string>(), where);
    const double scale = item["scale"].get<double>();
    const int64_t offset = item["offset"].get<int64_t>();
    const int64_t bits = item["bits"].get<int64_t>();
    if (bits < 2 || bits > 16) invalid(where + "bits is " + std::to_string(bits) + "; expected 2 to 16");
    const int64_t lo = -(int64_t{1} << (bits - 1)), hi = (int64_t{1} << (bits - 1)) - 1;
    if (offset < lo || offset > hi)
      invalid(where + "offset is " + std::to_string(offset) + "; expected a value in [" + std::to_string(lo) + ", " +
              std::to_string(hi) + "]");
    r.scale = static_cast<float>(scale);
    if (!std::isnormal(r.scale) || r.scale <= 0.0f)
      invalid(where + "scale is " + format_python_double(scale) + "; expected a positive normal float32");
    r.offset = static_cast<int32_t>(offset);
    r.bits = static_cast<int>(bits);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace amct
