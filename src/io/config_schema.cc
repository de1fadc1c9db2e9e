#include "config_schema.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "amct/calib/ifmr.h"
#include "amct/error.h"
#include "amct/layer_kind.h"
#include "amct/number_format.h"
#include "amct/text_check.h"

namespace amct::config_schema {
namespace {

// A positive decimal number digits * 10^exponent, read from a repr string.
struct Decimal {
  std::string digits;
  int exponent = 0;
};

Decimal parse_decimal(const std::string& repr) {
  Decimal result;
  const size_t e_pos = repr.find_first_of("eE");
  const std::string mantissa = repr.substr(0, e_pos);
  if (e_pos != std::string::npos) result.exponent = std::atoi(repr.c_str() + e_pos + 1);
  const size_t dot = mantissa.find('.');
  if (dot == std::string::npos) {
    result.digits = mantissa;
  } else {
    result.digits = mantissa.substr(0, dot) + mantissa.substr(dot + 1);
    result.exponent -= static_cast<int>(mantissa.size() - dot - 1);
  }
  return result;
}

// The integer digits of `value` scaled to 10^exponent (exponent <= value's).
std::string scaled_digits(const Decimal& value, int exponent) {
  std::string digits = value.digits + std::string(static_cast<size_t>(value.exponent - exponent), '0');
  const size_t first = digits.find_first_not_of('0');
  return first == std::string::npos ? "0" : digits.substr(first);
}

std::string add_digits(const std::string& a, const std::string& b) {
  std::string sum;
  int carry = 0;
  for (size_t i = 0; i < std::max(a.size(), b.size()) || carry; ++i) {
    int digit = carry;
    if (i < a.size()) digit += a[a.size() - 1 - i] - '0';
    if (i < b.size()) digit += b[b.size() - 1 - i] - '0';
    sum.push_back(static_cast<char>('0' + digit % 10));
    carry = digit / 10;
  }
  std::reverse(sum.begin(), sum.end());
  return sum;
}

bool digits_greater(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return a.size() > b.size();
  return a > b;
}

// AMCT compares search_step with the search range width using Python's
// Decimal on the values' repr strings, so a step of exactly 0.6 fits the
// range [0.7, 1.3] even though 1.3 - 0.7 < 0.6 in binary floating point.
// Called with positive values only (the range and step checks run first).
bool step_exceeds_range(double step, double start, double end) {
  const Decimal s = parse_decimal(format_python_double(step));
  const Decimal a = parse_decimal(format_python_double(start));
  const Decimal b = parse_decimal(format_python_double(end));
  const int exponent = std::min({s.exponent, a.exponent, b.exponent});
  return digits_greater(add_digits(scaled_digits(s, exponent), scaled_digits(a, exponent)),
                        scaled_digits(b, exponent));
}

std::string int_list(const std::vector<int>& values) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + std::to_string(values[i]);
  return text + "]";
}

bool contains(const std::vector<int>& values, int value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

const std::vector<int> kActivationBits = {4, 8, 16};
const std::vector<int> kWeightBits = {4, 6, 7, 8};
const std::vector<int> kHfmgBins = {1024, 2048, 4096, 8192};
std::vector<std::string> fusable_types() {
  std::vector<std::string> types;
  for (const ModuleKind& kind : module_kinds())
    if (kind.fusable_with_bn) types.emplace_back(kind.torch_type);
  std::sort(types.begin(), types.end());  // AMCT lists them as Conv1d, Conv2d, Conv3d
  return types;
}

constexpr double kDmqMin = 0.2;
constexpr double kDmqMax = 0.8;

// The range checks are written as "not inside" so that NaN (possible in a
// simple config) is rejected too.
void check_activation(const ActivationQuantParams& act) {
  if (!contains(kActivationBits, act.num_bits))
    invalid("activation num_bits " + std::to_string(act.num_bits) + " is not in " + int_list(kActivationBits));
  if (act.act_algo == "hfmg") {
    if (!contains(kHfmgBins, act.num_of_bins))
      invalid("num_of_bins " + std::to_string(act.num_of_bins) + " must be in " + int_list(kHfmgBins));
    return;
  }
  if (act.act_algo != "ifmr") invalid("act_algo must be ifmr or hfmg, but is \"" + shorten_for_message(act.act_algo) + "\"");
  for (const auto& [name, value] : {std::pair{"max_percentile", act.max_percentile},
                                    std::pair{"min_percentile", act.min_percentile}}) {
    if (!(value > 0.5 && value <= 1.0))
      invalid(std::string("The ") + name + " must be greater than 0.5 and less than or equal to 1.0, but is " +
              format_python_double(value));
  }
  if (!(act.search_range_start > 0)) invalid("search_range[0] must be greater than zero");
  if (!(act.search_range_start < act.search_range_end)) invalid("search_range[0] must be less than search_range[1]");
  if (!(act.search_step > 0)) invalid("The search_step must be greater than zero");
  // NaN failed above; a simple config can also hold inf, which the JSON
  // written from it could not carry back to our reader.
  for (const auto& [name, value] : {std::pair{"search_range[1]", act.search_range_end},
                                    std::pair{"search_step", act.search_step}}) {
    if (!std::isfinite(value))
      invalid(std::string("The ") + name + " must be a finite number, but is " + format_python_double(value));
  }
  if (step_exceeds_range(act.search_step, act.search_range_start, act.search_range_end))
    invalid("The search_step must be less than or equal to (search_range[1] - search_range[0])");
  ifmr_candidate_count(act);
}

void check_weight(const WeightQuantParams& wts, const std::string& layer_type, bool linear_channel_wise) {
  if (!contains(kWeightBits, wts.num_bits))
    invalid("weight num_bits " + std::to_string(wts.num_bits) + " is not in " + int_list(kWeightBits));
  if (wts.wts_algo == "ada_quantize") {
    if (!(wts.reg_param > 0 && wts.reg_param < 1)) invalid("reg_param must be less than 1 and larger than 0");
    if (!(wts.warm_start > 0 && wts.warm_start < 1)) invalid("warm_start must be less than 1 and larger than 0");
    if (wts.num_iteration < 0) invalid("num_iteration must be larger or equal to 0");
    for (const auto& [name, value] : {std::pair{"beta_range[0]", wts.beta_range_start},
                                      std::pair{"beta_range[1]", wts.beta_range_end}}) {
      if (!std::isfinite(value))
        invalid(std::string("The ") + name + " must be a finite number, but is " + format_python_double(value));
    }
    if (!(wts.beta_range_start > wts.beta_range_end))
      invalid("beta_range[0] (start) must be larger than beta_range[1] (end)");
    if (!(wts.beta_range_end > 0)) invalid("beta_range[1] (end) must be larger than 0");
    if (wts.init_scale != "kl" && wts.init_scale != "arq")
      invalid("init_scale must be \"kl\" (AMCT's) or \"arq\", but is \"" + shorten_for_message(wts.init_scale) + "\"");
  } else if (wts.wts_algo != "arq_quantize") {
    invalid("wts_algo must be arq_quantize or ada_quantize, but is \"" + shorten_for_message(wts.wts_algo) + "\"");
  }
  if (wts.channel_wise && !channel_wise_allowed(layer_type, linear_channel_wise))
    invalid("The channel_wise must be False for layer type " + layer_type);
}

}  // namespace

const std::vector<std::string>& root_keys() {
  static const std::vector<std::string> keys = {"version",  "batch_num", "activation_offset", "do_fusion", "fakequant_precision_mode",
                                                "skip_fusion_layers"};
  return keys;
}

bool is_root_key(std::string_view key) {
  const auto& keys = root_keys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::string python_list(const std::vector<std::string>& items) {
  std::string text = "[";
  for (size_t i = 0; i < items.size(); ++i) text += (i ? ", '" : "'") + shorten_for_message(items[i]) + "'";
  return text + "]";
}

std::vector<std::string> repeated_items(const std::vector<std::string>& items) {
  std::vector<std::string> repeated;
  for (auto it = items.begin(); it != items.end(); ++it) {
    const bool seen_before = std::find(items.begin(), it, *it) != it;
    if (seen_before && std::find(repeated.begin(), repeated.end(), *it) == repeated.end()) repeated.push_back(*it);
  }
  return repeated;
}

void check_no_repeated(const std::vector<std::string>& items, const std::string& what) {
  const std::vector<std::string> repeated = repeated_items(items);
  if (!repeated.empty())
    invalid("Please delete repeated items in " + what + ", repeated items are " + python_list(repeated));
}

std::vector<const LayerInfo*> supported_layers(const ModelInfo& model) {
  std::vector<const LayerInfo*> layers;
  for (const auto& layer : model.layers)
    if (layer.supported) layers.push_back(&layer);
  if (layers.empty()) invalid("No layer support quantization in the graph.");
  for (const LayerInfo* layer : layers)
    if (is_root_key(layer->name)) invalid(layer->name + " is a global parameter, can not be a layer name");
  return layers;
}

void check_skip_layers(const std::vector<std::string>& skip_layers, const ModelInfo& model) {
  check_no_repeated(skip_layers, "skip_layers");
  for (const auto& name : skip_layers)
    if (!model.find_module(name)) invalid("Layer " + shorten_for_message(name) + " does not exist in the graph.");
  for (const auto& name : skip_layers)
    if (model.find_module(name)->layer_type.empty()) invalid("Layer " + name + " does not support quantization.");
}

void check_batch_num(int64_t batch_num) {
  if (batch_num <= 0) invalid("The batch_num must be greater than zero.");
}

void check_fakequant_precision_mode(const std::string& mode) {
  if (mode != "DEFAULT" && mode != "FORCE_FP16_QUANT")
    invalid("fakequant_precision_mode must be one of ['DEFAULT', 'FORCE_FP16_QUANT'], but is \"" +
            shorten_for_message(mode) + "\"");
}

void check_skip_fusion_layers(const std::vector<std::string>& layers, const ModelInfo& model) {
  check_no_repeated(layers, "skip_fusion_layers");
  for (const auto& name : layers) {
    const ModuleInfo* module = model.find_module(name);
    if (!module)
      invalid("Layer \"" + shorten_for_message(name) + "\" in skip_fusion_layers does not exist in the graph.");
    const ModuleKind* kind = find_module_kind(module->layer_type);
    if (!kind || !kind->fusable_with_bn)
      invalid("Skip fusion layer \"" + name + "\" is a " + module->type + ", but only " + python_list(fusable_types()) +
              " can be fused");
  }
}

bool supports_dmq(const std::string& type) {
  const ModuleKind* kind = find_module_kind(type);
  return kind && kind->dmq;
}

bool supports_ada(const std::string& type) {
  const ModuleKind* kind = find_module_kind(type);
  return kind && kind->ada;
}

bool supports_int6_int7_weights(const std::string& type) {
  const ModuleKind* kind = find_module_kind(type);
  return kind && kind->int6_int7_weights;
}

bool is_symmetric_only(const std::string& type) {
  const ModuleKind* kind = find_module_kind(type);
  return kind && kind->symmetric_only;
}

bool channel_wise_allowed(const std::string& type, bool linear_channel_wise) {
  return is_channel_wise_type(type) || (linear_channel_wise && type == "Linear");
}

LayerQuantConfig default_layer_config(const LayerInfo& layer, bool quant_enable, bool asymmetric,
                                      bool linear_channel_wise) {
  LayerQuantConfig config;
  config.name = layer.name;
  config.quant_enable = quant_enable;
  config.activation.asymmetric = asymmetric && !is_symmetric_only(layer.module_type);
  config.weight.channel_wise = channel_wise_allowed(layer.module_type, linear_channel_wise);
  return config;
}

void check_layer_values(const LayerQuantConfig& config, const LayerInfo& layer, bool linear_channel_wise) {
  try {
    if (config.dmq_balancer_param) {
      const double alpha = *config.dmq_balancer_param;
      if (!(alpha >= kDmqMin && alpha <= kDmqMax))
        invalid("The dmq_balancer_param must be in range [0.2, 0.8], but is " + format_python_double(alpha));
    }
    check_activation(config.activation);
    check_weight(config.weight, layer.module_type, linear_channel_wise);
  } catch (const Error& error) {
    fail(error.code(), std::string(error.what()) + " in layer " + config.name);
  }
}

}  // namespace amct::config_schema
