// The config JSON: creation from parameters (docs/amct-reference.md#create_quant_config), the writer (docs/amct-reference.md#config-json, #example-config)
// and the validating reader (docs/amct-reference.md#config-json, #reading-a-config).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include <nlohmann/json.hpp>

#include "amct/config.h"
#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/json_writer.h"
#include "amct/text_check.h"
#include "config_schema.h"

namespace amct {
namespace {

using Json = nlohmann::ordered_json;

// amct's root key beyond AMCT's schema (QuantConfig::quantize_subclasses).
constexpr const char* kQuantizeSubclassesKey = "quantize_subclasses";
// amct's root key beyond AMCT's schema (QuantConfig::linear_channel_wise).
constexpr const char* kLinearChannelWiseKey = "linear_channel_wise";
// amct's root key beyond AMCT's schema (QuantConfig::quantize_activation_matmuls).
constexpr const char* kActivationMatmulsKey = "quantize_activation_matmuls";

void sort_layers(std::vector<LayerQuantConfig>& layers) {
  std::sort(layers.begin(), layers.end(),
            [](const LayerQuantConfig& a, const LayerQuantConfig& b) { return a.name < b.name; });
}

Json activation_to_json(const ActivationQuantParams& act) {
  Json out = Json::object();
  out["num_bits"] = act.num_bits;
  if (act.act_algo == "hfmg") {
    out["act_algo"] = act.act_algo;
    out["asymmetric"] = act.asymmetric;
    out["num_of_bins"] = act.num_of_bins;
    return out;
  }
  out["max_percentile"] = act.max_percentile;
  out["min_percentile"] = act.min_percentile;
  out["search_range"] = Json::array({act.search_range_start, act.search_range_end});
  out["search_step"] = act.search_step;
  out["act_algo"] = act.act_algo;
  out["asymmetric"] = act.asymmetric;
  return out;
}

Json weight_to_json(const WeightQuantParams& wts) {
  Json out = Json::object();
  out["num_bits"] = wts.num_bits;
  if (wts.wts_algo == "ada_quantize") {
    out["reg_param"] = wts.reg_param;
    out["warm_start"] = wts.warm_start;
    out["num_iteration"] = wts.num_iteration;
    out["beta_range"] = Json::array({wts.beta_range_start, wts.beta_range_end});
    if (wts.init_scale != "kl") out["init_scale"] = wts.init_scale;  // AMCT's configs never hold it
  }
  out["channel_wise"] = wts.channel_wise;
  out["wts_algo"] = wts.wts_algo;
  return out;
}

// ---- reading ---------------------------------------------------------------

std::string type_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::boolean: return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "int";
    case Json::value_t::number_float: return "float";
    case Json::value_t::string: return "str";
    case Json::value_t::array: return "list";
    case Json::value_t::object: return "dict";
    default: return "null";
  }
}

[[noreturn]] void wrong_type(const std::string& key, const std::string& expected, const Json& value) {
  fail(ErrorCode::kTypeError, "Type of " + key + " should be " + expected + ", but is " + type_name(value));
}

// JSON true is a bool, never the integer 1 (and 1 is never true), unlike in
// Python where bool is a subclass of int.
bool read_bool(const std::string& key, const Json& value) {
  if (!value.is_boolean()) wrong_type(key, "bool", value);
  return value.get<bool>();
}

int64_t read_int(const std::string& key, const Json& value) {
  if (!value.is_number_integer()) wrong_type(key, "int", value);
  if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    invalid("The " + key + " " + value.dump() + " is too large");
  return value.get<int64_t>();
}

// For fields that only take a few small values (bit widths, bin counts).
int read_small_int(const std::string& key, const Json& value) {
  const int64_t number = read_int(key, value);
  if (number < INT_MIN || number > INT_MAX) invalid("The " + key + " " + std::to_string(number) + " is out of range");
  return static_cast<int>(number);
}

double read_number(const std::string& key, const Json& value) {
  if (!value.is_number()) wrong_type(key, "float", value);
  return value.get<double>();
}

std::string read_string(const std::string& key, const Json& value) {
  if (!value.is_string()) wrong_type(key, "str", value);
  return value.get<std::string>();
}

std::pair<double, double> read_pair(const std::string& key, const Json& value) {
  if (!value.is_array()) wrong_type(key, "list", value);
  if (value.size() != 2)
    invalid("The " + key + " must be a list of two numbers, but has " + std::to_string(value.size()) + " items");
  return {read_number(key + "[0]", value[0]), read_number(key + "[1]", value[1])};
}

// Runs `body`, adding " in <where>" to any error it raises, the way AMCT
// qualifies messages from nested fields.
template <typename Body>
void within(const std::string& where, Body&& body) {
  try {
    body();
  } catch (const Error& error) {
    fail(error.code(), std::string(error.what()) + " in " + where);
  }
}

const std::vector<std::string> kIfmrOnlyKeys = {"max_percentile", "min_percentile", "search_range", "search_step"};

// IFMR-only and HFMG-only settings exclude each other; the algorithm is HFMG
// iff an HFMG setting is present.
std::string infer_act_algo(const Json& params) {
  std::vector<std::string> ifmr_keys;
  std::vector<std::string> hfmg_keys;
  for (const auto& [key, value] : params.items()) {
    if (std::find(kIfmrOnlyKeys.begin(), kIfmrOnlyKeys.end(), key) != kIfmrOnlyKeys.end()) ifmr_keys.push_back(key);
    if (key == "num_of_bins") hfmg_keys.push_back(key);
  }
  const auto algo = params.find("act_algo");
  if (algo != params.end() && algo->is_string()) {
    if (*algo == "ifmr") ifmr_keys.push_back("act_algo");
    if (*algo == "hfmg") hfmg_keys.push_back("act_algo");
  }
  if (!ifmr_keys.empty() && !hfmg_keys.empty())
    invalid(config_schema::python_list(ifmr_keys) + " and " + config_schema::python_list(hfmg_keys) +
            " can not appear at same time");
  return hfmg_keys.empty() ? "ifmr" : "hfmg";
}

void read_activation(const Json& params, ActivationQuantParams& act, std::optional<bool>& asymmetric) {
  act.act_algo = infer_act_algo(params);
  for (const auto& [key, value] : params.items()) {
    if (key == "num_bits") {
      act.num_bits = read_small_int(key, value);
    } else if (key == "max_percentile") {
      act.max_percentile = read_number(key, value);
    } else if (key == "min_percentile") {
      act.min_percentile = read_number(key, value);
    } else if (key == "search_range") {
      std::tie(act.search_range_start, act.search_range_end) = read_pair(key, value);
    } else if (key == "search_step") {
      act.search_step = read_number(key, value);
    } else if (key == "act_algo") {
      act.act_algo = read_string(key, value);
    } else if (key == "asymmetric") {
      asymmetric = read_bool(key, value);
    } else if (key == "num_of_bins") {
      act.num_of_bins = read_small_int(key, value);
    } else {
      invalid("Unknown parameter " + shorten_for_message(key));
    }
  }
}

void read_weight(const Json& params, WeightQuantParams& wts, bool& channel_wise_set) {
  if (const auto algo = params.find("wts_algo"); algo != params.end()) {
    wts.wts_algo = read_string("wts_algo", *algo);
    if (wts.wts_algo != "arq_quantize" && wts.wts_algo != "ada_quantize")
      invalid("wts_algo must be arq_quantize or ada_quantize, but is \"" + shorten_for_message(wts.wts_algo) + "\"");
  }
  const bool ada = wts.wts_algo == "ada_quantize";
  for (const auto& [key, value] : params.items()) {
    if (key == "num_bits") {
      wts.num_bits = read_small_int(key, value);
    } else if (key == "channel_wise") {
      wts.channel_wise = read_bool(key, value);
      channel_wise_set = true;
    } else if (key == "wts_algo") {
      continue;
    } else if (ada && key == "reg_param") {
      wts.reg_param = read_number(key, value);
    } else if (ada && key == "warm_start") {
      wts.warm_start = read_number(key, value);
    } else if (ada && key == "num_iteration") {
      wts.num_iteration = read_int(key, value);
    } else if (ada && key == "beta_range") {
      std::tie(wts.beta_range_start, wts.beta_range_end) = read_pair(key, value);
    } else if (ada && key == "init_scale") {
      wts.init_scale = read_string(key, value);
    } else {
      invalid(shorten_for_message(key) + " is not valid param of quantize " + wts.wts_algo);
    }
  }
}

struct ParsedLayer {
  LayerQuantConfig config;
  std::optional<bool> asymmetric;  // as written; resolved once the root is read
};

ParsedLayer read_layer(const std::string& name, const Json& entry, const LayerInfo& layer, bool linear_channel_wise) {
  if (!entry.is_object()) wrong_type(name, "dict", entry);
  ParsedLayer parsed;
  LayerQuantConfig& config = parsed.config;
  config.name = name;
  // A hand-written entry without quant_enable asks for quantization (AMCT's
  // own sample configs list layers with only their algorithm parameters).
  config.quant_enable = true;
  bool channel_wise_set = false;
  within("layer " + name, [&] {
    for (const auto& [key, value] : entry.items()) {
      if (key == "quant_enable") {
        config.quant_enable = read_bool(key, value);
      } else if (key == "dmq_balancer_param") {
        config.dmq_balancer_param = read_number(key, value);
      } else if (key == "activation_quant_params") {
        if (!value.is_object()) wrong_type(key, "dict", value);
        within(key, [&] { read_activation(value, config.activation, parsed.asymmetric); });
      } else if (key == "weight_quant_params") {
        if (!value.is_object()) wrong_type(key, "dict", value);
        within(key, [&] { read_weight(value, config.weight, channel_wise_set); });
      } else {
        invalid("Unknown parameter " + shorten_for_message(key));
      }
    }
  });
  if (!channel_wise_set)
    config.weight.channel_wise = config_schema::channel_wise_allowed(layer.module_type, linear_channel_wise);

  if (config.activation.num_bits == 16 && !supports_int16(layer))
    invalid("current layer " + name + " does not support int16 quant.");
  if (config.quant_enable && config_schema::is_symmetric_only(layer.module_type) && parsed.asymmetric == true)
    invalid("current layer " + name + " only support act symmetric quant.");
  config_schema::check_layer_values(config, layer, linear_channel_wise);
  return parsed;
}

std::vector<std::string> read_string_list(const std::string& key, const Json& value) {
  if (!value.is_array()) wrong_type(key, "list", value);
  std::vector<std::string> items;
  for (const Json& item : value) items.push_back(read_string("an item of " + key, item));
  return items;
}

QuantConfig read_config(const Json& root, const ModelInfo& model) {
  if (!root.is_object()) wrong_type("the config", "dict", root);
  QuantConfig config;
  // Read first: it decides how every layer entry is read, wherever it stands.
  if (const auto found = root.find(kLinearChannelWiseKey); found != root.end())
    config.linear_channel_wise = read_bool(kLinearChannelWiseKey, *found);
  std::map<std::string, ParsedLayer> parsed_layers;
  for (const auto& [key, value] : root.items()) {
    if (key == "version") {
      if (read_int(key, value) != 1) invalid("The version must be 1.");
    } else if (key == "batch_num") {
      config.batch_num = read_int(key, value);
      config_schema::check_batch_num(config.batch_num);
    } else if (key == "activation_offset") {
      config.activation_offset = read_bool(key, value);
    } else if (key == "do_fusion") {
      config.do_fusion = read_bool(key, value);
    } else if (key == "fakequant_precision_mode") {
      config.fakequant_precision_mode = read_string(key, value);
      config_schema::check_fakequant_precision_mode(config.fakequant_precision_mode);
    } else if (key == "skip_fusion_layers") {
      config.skip_fusion_layers = read_string_list(key, value);
      config_schema::check_skip_fusion_layers(config.skip_fusion_layers, model);
    } else if (key == kQuantizeSubclassesKey) {
      config.quantize_subclasses = read_bool(key, value);
    } else if (key == kLinearChannelWiseKey) {
      continue;
    } else if (key == kActivationMatmulsKey) {
      config.quantize_activation_matmuls = read_bool(key, value);
    } else if (!model.find_module(key)) {
      invalid(shorten_for_message(key) + " is an invalid layer name or parameter.");
    } else {
      const LayerInfo* layer = model.find_layer(key);
      if (!layer || !layer->supported) invalid("layer " + key + " does not support quant.");
      parsed_layers.emplace(key, read_layer(key, value, *layer, config.linear_channel_wise));
    }
  }

  for (const LayerInfo* layer : config_schema::supported_layers(model)) {
    const auto found = parsed_layers.find(layer->name);
    if (found == parsed_layers.end()) {
      config.layers.push_back(config_schema::default_layer_config(*layer, false, config.activation_offset,
                                                                  config.linear_channel_wise));
      continue;
    }
    LayerQuantConfig resolved = found->second.config;
    // Conv3d only supports symmetric activations, so it resolves to false
    // instead of falling back to activation_offset (a quantized Conv3d that
    // says true was rejected in read_layer).
    resolved.activation.asymmetric = !config_schema::is_symmetric_only(layer->module_type) &&
                                     found->second.asymmetric.value_or(config.activation_offset);
    config.layers.push_back(std::move(resolved));
  }
  sort_layers(config.layers);
  return config;
}

// A config is three levels deep (root, layer, parameter block) plus a list;
// the limit only stops hostile nesting before it costs stack or memory.
constexpr int kMaxJsonDepth = 64;

// "fc.activation_quant_params.search_step": the keys of the objects open at
// the point of an error, for messages.
std::string key_path(const std::vector<std::vector<std::string>>& open_objects) {
  std::string path;
  for (const auto& keys : open_objects)
    if (!keys.empty()) path += (path.empty() ? "" : ".") + shorten_for_message(keys.back());
  return path;
}

// Parses JSON and rejects objects with a repeated key, as AMCT's loader does.
Json parse_json_without_duplicates(const std::string& text, const std::string& origin) {
  const std::string file = "quant config '" + origin + "'";
  check_utf8(text, file);
  std::vector<std::vector<std::string>> open_objects;
  std::vector<std::string> first_repeats;
  int depth = 0;
  const Json::parser_callback_t track_keys = [&](int, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        // Thrown here, the parse stops at the first level too deep instead of
        // reading the rest of a hostile file.
        if (++depth > kMaxJsonDepth)
          invalid(file + " is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels (at '" +
                  key_path(open_objects) + "')");
        if (event == Json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case Json::parse_event_t::array_end:
        --depth;
        break;
      case Json::parse_event_t::key:
        if (!open_objects.empty()) open_objects.back().push_back(parsed.get<std::string>());
        break;
      case Json::parse_event_t::object_end:
        --depth;
        if (!open_objects.empty()) {
          if (first_repeats.empty()) first_repeats = config_schema::repeated_items(open_objects.back());
          open_objects.pop_back();
        }
        break;
      default:
        break;
    }
    return true;
  };
  Json root;
  try {
    root = Json::parse(text, track_keys);
  } catch (const Json::parse_error& error) {
    invalid(file + " is not valid JSON: " + shorten_for_message(error.what(), 240));
  } catch (const Json::out_of_range& error) {
    // nlohmann says "number overflow parsing '1e400'"; the number is quoted last.
    const std::string what = error.what();
    const size_t open = what.find('\'');
    const std::string number =
        open == std::string::npos ? what : what.substr(open + 1, what.size() - open - 2);
    invalid(file + ": the number " + shorten_for_message(number) + " of '" + key_path(open_objects) +
            "' is out of the range of a double");
  }
  if (!first_repeats.empty())
    invalid("Please delete repeated items in " + origin + ", repeated items are " +
            config_schema::python_list(first_repeats));
  return root;
}

}  // namespace

const LayerQuantConfig* QuantConfig::find_layer(const std::string& name) const {
  for (const auto& layer : layers)
    if (layer.name == name) return &layer;
  return nullptr;
}

QuantConfig make_default_config(const ModelInfo& model, const std::vector<std::string>& skip_layers,
                                int64_t batch_num, bool activation_offset, bool linear_channel_wise) {
  config_schema::check_skip_layers(skip_layers, model);
  const std::vector<const LayerInfo*> supported = config_schema::supported_layers(model);
  const auto skipped = [&](const std::string& name) {
    return std::find(skip_layers.begin(), skip_layers.end(), name) != skip_layers.end();
  };
  if (std::all_of(supported.begin(), supported.end(), [&](const LayerInfo* layer) { return skipped(layer->name); }))
    invalid("Except skip_layers, no layer needs to quantize.");
  config_schema::check_batch_num(batch_num);

  QuantConfig config;
  config.batch_num = batch_num;
  config.activation_offset = activation_offset;
  config.linear_channel_wise = linear_channel_wise;
  for (const LayerInfo* layer : supported)
    config.layers.push_back(
        config_schema::default_layer_config(*layer, !skipped(layer->name), activation_offset, linear_channel_wise));
  sort_layers(config.layers);
  return config;
}

std::string config_to_json(const QuantConfig& config) {
  Json root = Json::object();
  root["version"] = config.version;
  root["batch_num"] = config.batch_num;
  root["activation_offset"] = config.activation_offset;
  root["do_fusion"] = config.do_fusion;
  if (config.fakequant_precision_mode != "DEFAULT") root["fakequant_precision_mode"] = config.fakequant_precision_mode;
  root["skip_fusion_layers"] = config.skip_fusion_layers;
  // Only the opt-out and the opt-in are written, so a default config stays
  // one AMCT reads.
  if (!config.quantize_subclasses) root[kQuantizeSubclassesKey] = false;
  if (config.linear_channel_wise) root[kLinearChannelWiseKey] = true;
  if (config.quantize_activation_matmuls) root[kActivationMatmulsKey] = true;

  std::vector<LayerQuantConfig> layers = config.layers;
  sort_layers(layers);
  for (const LayerQuantConfig& layer : layers) {
    Json entry = Json::object();
    entry["quant_enable"] = layer.quant_enable;
    if (layer.dmq_balancer_param) entry["dmq_balancer_param"] = *layer.dmq_balancer_param;
    entry["activation_quant_params"] = activation_to_json(layer.activation);
    entry["weight_quant_params"] = weight_to_json(layer.weight);
    root[layer.name] = std::move(entry);
  }
  return to_python_json(root);
}

QuantConfig parse_config_text(const std::string& text, const std::string& origin, const ModelInfo& model) {
  const Json root = parse_json_without_duplicates(text, origin);
  try {
    return read_config(root, model);
  } catch (const Error& error) {
    fail(error.code(), "quant config '" + origin + "': " + error.what());
  }
}

bool config_quantizes_subclasses(const std::string& text, const std::string& origin) {
  const Json root = parse_json_without_duplicates(text, origin);
  const auto found = root.is_object() ? root.find(kQuantizeSubclassesKey) : root.end();
  if (!root.is_object() || found == root.end()) return true;
  try {
    return read_bool(kQuantizeSubclassesKey, *found);
  } catch (const Error& error) {
    fail(error.code(), "quant config '" + origin + "': " + error.what());
  }
}

QuantConfig parse_config_file(const std::string& path, const ModelInfo& model) {
  return parse_config_text(read_file(path, "quant config file"), path, model);
}

}  // namespace amct
