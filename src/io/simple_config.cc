// create_quant_config from a simple config (docs/amct-reference.md#simple-config): AMCT's text-format
// AMCTConfig with a common config, per-type and per-layer overrides.

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <optional>

#include "amct/config.h"
#include "amct/error.h"
#include "amct/layer_kind.h"
#include "amct/file_io.h"
#include "amct/number_format.h"
#include "amct/text_check.h"
#include "amct/text_proto.h"
#include "calibration_config_pytorch.pb.h"
#include "config_schema.h"

namespace amct {
namespace {

namespace pb = AMCTPytorchProto;

pb::AMCTConfig parse_simple_config(const std::string& text, const std::string& path) {
  check_utf8(text, "simple config '" + path + "'");
  pb::AMCTConfig proto;
  merge_text_proto(text, proto, "simple config '" + path + "' is not a valid AMCTConfig");
  return proto;
}

// AMCT turns proto floats into Python floats through their shortest float32
// text, so 0.7f becomes 0.7 rather than 0.699999988079071.
double python_float(float value) { return std::strtod(format_python_float32(value).c_str(), nullptr); }

// For uint32 fields that only take a few small values (bit widths, bin counts).
int small_int(uint32_t value, const std::string& field, const std::string& layer) {
  if (value > static_cast<uint32_t>(INT_MAX))
    invalid("The " + field + " " + std::to_string(value) + " is out of range in layer " + layer);
  return static_cast<int>(value);
}

int activation_bits(int dst_type) { return dst_type == pb::FMRQuantize::INT16 ? 16 : 8; }

// What a CalibrationConfig message asks for, as the override checks see it.
struct Requested {
  bool asymmetric_true = false;
  bool channel_wise_true = false;  // only counted for ARQ, as AMCT does
  bool dmq = false;
  bool int16 = false;
  bool ada = false;
  std::optional<uint32_t> int6_int7_bits;
};

Requested requested_by(const pb::CalibrationConfig& calibration) {
  Requested asked;
  if (calibration.has_ifmr_quantize()) {
    const auto& ifmr = calibration.ifmr_quantize();
    asked.asymmetric_true = ifmr.has_asymmetric() && ifmr.asymmetric();
    asked.int16 = activation_bits(ifmr.dst_type()) == 16;
  } else if (calibration.has_hfmg_quantize()) {
    const auto& hfmg = calibration.hfmg_quantize();
    asked.asymmetric_true = hfmg.has_asymmetric() && hfmg.asymmetric();
    asked.int16 = activation_bits(hfmg.dst_type()) == 16;
  }
  if (calibration.has_arq_quantize()) {
    const auto& arq = calibration.arq_quantize();
    asked.channel_wise_true = arq.has_channel_wise() && arq.channel_wise();
    if (arq.has_quant_bits() && (arq.quant_bits() == 6 || arq.quant_bits() == 7)) asked.int6_int7_bits = arq.quant_bits();
  }
  asked.ada = calibration.has_ada_quantize();
  asked.dmq = calibration.has_dmq_balancer();
  return asked;
}

// What an override's target (one layer, or every layer of a type) can take.
struct Capabilities {
  std::string subject;  // "<name> layer" or "<type> type", as in AMCT's messages
  bool symmetric_only = false;
  bool channel_wise = false;
  bool dmq = false;
  bool int16 = false;
  bool ada = false;
  bool int6_int7 = false;
};

// Unlike the common config, an override that asks for something its target
// cannot do is an error, not a silent adjustment.
void check_override(const pb::CalibrationConfig& calibration, const Capabilities& target,
                    const std::string& asymmetric_message) {
  const Requested asked = requested_by(calibration);
  if (target.symmetric_only && asked.asymmetric_true) invalid(asymmetric_message);
  if (!target.channel_wise && asked.channel_wise_true) invalid("channel_wise can only be False for " + target.subject);
  if (!target.dmq && asked.dmq) invalid("dmq_balancer not support for " + target.subject);
  if (!target.int16 && asked.int16) invalid("int16_quantizable not support for " + target.subject);
  if (!target.ada && asked.ada) invalid("ada_quantizable not support for " + target.subject);
  if (!target.int6_int7 && asked.int6_int7_bits)
    invalid("quant_bits " + std::to_string(*asked.int6_int7_bits) + " not support for " + target.subject);
}

void check_layer_overrides(const pb::AMCTConfig& proto, const ModelInfo& model) {
  const bool linear_channel_wise = proto.linear_channel_wise();
  std::vector<std::string> names;
  for (const auto& item : proto.override_layer_configs()) names.push_back(item.layer_name());
  config_schema::check_no_repeated(names, "override_layer_configs");
  for (const auto& item : proto.override_layer_configs()) {
    const std::string& name = item.layer_name();
    const ModuleInfo* module = model.find_module(name);
    if (!module) invalid("Layer " + shorten_for_message(name) + " does not exist in the graph.");
    // A module that exists but is not supported only fails on settings that
    // need support; otherwise its override is ignored.
    const LayerInfo* layer = model.find_layer(name);
    const bool supported = layer && layer->supported;
    Capabilities target;
    target.subject = name + " layer";
    target.symmetric_only = config_schema::is_symmetric_only(module->layer_type);
    target.channel_wise = config_schema::channel_wise_allowed(module->layer_type, linear_channel_wise);
    target.dmq = supported && config_schema::supports_dmq(module->layer_type);
    target.int16 = supported && supports_int16(*layer);
    target.ada = supported && config_schema::supports_ada(module->layer_type);
    target.int6_int7 = config_schema::supports_int6_int7_weights(module->layer_type);
    check_override(item.calibration_config(), target, "Layer " + name + " can only set asymmetric be False ");
  }
}

void check_type_overrides(const pb::AMCTConfig& proto) {
  std::vector<std::string> types;
  for (const auto& item : proto.override_layer_types()) types.push_back(item.layer_type());
  config_schema::check_no_repeated(types, "override_layer_types");
  for (const auto& item : proto.override_layer_types()) {
    const std::string& type = item.layer_type();
    if (!is_quantizable_type(type)) invalid("Layer type " + shorten_for_message(type) + " does not support quantize.");
    // At type level Linear counts as INT16-capable; a Linear without bias is
    // downgraded per layer later.
    LayerInfo type_probe;
    type_probe.module_type = type;
    type_probe.has_bias = true;
    Capabilities target;
    target.subject = type + " type";
    target.symmetric_only = config_schema::is_symmetric_only(type);
    target.channel_wise = config_schema::channel_wise_allowed(type, proto.linear_channel_wise());
    target.dmq = config_schema::supports_dmq(type);
    target.int16 = supports_int16(type_probe);
    target.ada = config_schema::supports_ada(type);
    target.int6_int7 = config_schema::supports_int6_int7_weights(type);
    check_override(item.calibration_config(), target, "Layer type " + type + " can only set asymmetric be False ");
  }
}

void check_skip_layer_types(const std::vector<std::string>& skip_types) {
  for (const auto& type : skip_types)
    if (!is_quantizable_type(type)) invalid("Layer type " + shorten_for_message(type) + " does not support quantize.");
  const auto& all_types = quantizable_types();
  const bool every_type_skipped = std::all_of(all_types.begin(), all_types.end(), [&](const std::string& type) {
    return std::find(skip_types.begin(), skip_types.end(), type) != skip_types.end();
  });
  if (every_type_skipped) invalid("Except skip_types, no type need to quantize.");
}

struct LayerDraft {
  LayerQuantConfig config;
  std::optional<bool> asymmetric;  // set only when the chosen config says so
};

// One layer's entry from the config chosen for it; whatever that config does
// not set gets the schema default (never a value from a lower level).
LayerDraft draft_layer(const pb::CalibrationConfig& calibration, const LayerInfo& layer, bool quant_enable,
                       bool linear_channel_wise) {
  LayerDraft draft;
  draft.config = config_schema::default_layer_config(layer, quant_enable, true, linear_channel_wise);
  ActivationQuantParams& act = draft.config.activation;
  if (calibration.has_ifmr_quantize()) {
    const auto& ifmr = calibration.ifmr_quantize();
    act.act_algo = "ifmr";
    act.num_bits = activation_bits(ifmr.dst_type());
    act.max_percentile = python_float(ifmr.max_percentile());
    act.min_percentile = python_float(ifmr.min_percentile());
    act.search_range_start = python_float(ifmr.search_range_start());
    act.search_range_end = python_float(ifmr.search_range_end());
    act.search_step = python_float(ifmr.search_step());
    if (ifmr.has_asymmetric()) draft.asymmetric = ifmr.asymmetric();
  } else if (calibration.has_hfmg_quantize()) {
    const auto& hfmg = calibration.hfmg_quantize();
    act.act_algo = "hfmg";
    act.num_bits = activation_bits(hfmg.dst_type());
    act.num_of_bins = small_int(hfmg.num_of_bins(), "num_of_bins", layer.name);
    if (hfmg.has_asymmetric()) draft.asymmetric = hfmg.asymmetric();
  }

  WeightQuantParams& wts = draft.config.weight;
  if (calibration.has_arq_quantize()) {
    const auto& arq = calibration.arq_quantize();
    if (arq.has_channel_wise()) wts.channel_wise = arq.channel_wise();
    if (arq.has_quant_bits()) wts.num_bits = small_int(arq.quant_bits(), "quant_bits", layer.name);
  } else if (calibration.has_ada_quantize()) {
    const auto& ada = calibration.ada_quantize();
    wts.wts_algo = "ada_quantize";
    wts.num_iteration = ada.num_iteration();
    wts.reg_param = python_float(ada.reg_param());
    wts.beta_range_start = python_float(ada.beta_range_start());
    wts.beta_range_end = python_float(ada.beta_range_end());
    wts.warm_start = python_float(ada.warm_start());
    if (ada.has_channel_wise()) wts.channel_wise = ada.channel_wise();
  }

  if (calibration.has_dmq_balancer())
    draft.config.dmq_balancer_param = python_float(calibration.dmq_balancer().migration_strength());
  return draft;
}

// INT4 weights are packed in pairs along Cin, which a grouped conv (whose
// weight holds Cin/groups) or an odd Cin cannot do.
bool int4_packable(const LayerInfo& layer) {
  const ModuleKind* kind = find_module_kind(layer.module_type);
  if (kind && !has_weight(*kind)) return true;
  if (layer.groups > 1) return false;
  return layer.cin % 2 == 0;
}

// The automatic adjustments AMCT applies to layers whose settings came from
// the common config (the overrides were checked strictly before).
void adjust_to_layer(LayerQuantConfig& config, const LayerInfo& layer) {
  if (config.dmq_balancer_param && !config_schema::supports_dmq(layer.module_type)) config.dmq_balancer_param.reset();
  if (config.activation.num_bits == 16 && !supports_int16(layer)) config.activation.num_bits = 8;
  const int wts_bits = config.weight.num_bits;
  if ((wts_bits == 6 || wts_bits == 7) && !config_schema::supports_int6_int7_weights(layer.module_type))
    config.weight.num_bits = 8;
  if (wts_bits == 4 && !int4_packable(layer)) config.weight.num_bits = 8;
}

const pb::CalibrationConfig& chosen_calibration(const pb::AMCTConfig& proto, const LayerInfo& layer) {
  for (const auto& item : proto.override_layer_configs())
    if (item.layer_name() == layer.name) return item.calibration_config();
  for (const auto& item : proto.override_layer_types())
    if (item.layer_type() == layer.module_type) return item.calibration_config();
  return proto.common_config();
}

std::optional<std::string> common_act_algo(const pb::AMCTConfig& proto) {
  if (proto.common_config().has_ifmr_quantize()) return "ifmr";
  if (proto.common_config().has_hfmg_quantize()) return "hfmg";
  return std::nullopt;
}

std::optional<bool> common_asymmetric(const pb::AMCTConfig& proto) {
  const auto& common = proto.common_config();
  if (common.has_ifmr_quantize() && common.ifmr_quantize().has_asymmetric()) return common.ifmr_quantize().asymmetric();
  if (common.has_hfmg_quantize() && common.hfmg_quantize().has_asymmetric()) return common.hfmg_quantize().asymmetric();
  return std::nullopt;
}

QuantConfig build_config(const pb::AMCTConfig& proto, const ModelInfo& model) {
  const std::vector<std::string> skip_layers(proto.skip_layers().begin(), proto.skip_layers().end());
  const std::vector<std::string> skip_types(proto.skip_layer_types().begin(), proto.skip_layer_types().end());
  QuantConfig config;
  config.batch_num = proto.batch_num();
  config.activation_offset = proto.activation_offset();
  config.do_fusion = proto.do_fusion();
  if (proto.has_fakequant_precision_mode()) config.fakequant_precision_mode = "FORCE_FP16_QUANT";
  config.skip_fusion_layers.assign(proto.skip_fusion_layers().begin(), proto.skip_fusion_layers().end());
  config.quantize_subclasses = proto.quantize_subclasses();
  config.linear_channel_wise = proto.linear_channel_wise();
  config.quantize_activation_matmuls = proto.quantize_activation_matmuls();

  config_schema::check_no_repeated(skip_layers, "skip_layers");
  config_schema::check_no_repeated(skip_types, "skip_layer_types");
  config_schema::check_no_repeated(config.skip_fusion_layers, "skip_fusion_layers");
  check_layer_overrides(proto, model);
  check_type_overrides(proto);
  config_schema::check_skip_layers(skip_layers, model);
  check_skip_layer_types(skip_types);

  const std::vector<const LayerInfo*> supported = config_schema::supported_layers(model);
  const auto is_quantized = [&](const LayerInfo& layer) {
    return std::find(skip_layers.begin(), skip_layers.end(), layer.name) == skip_layers.end() &&
           std::find(skip_types.begin(), skip_types.end(), layer.module_type) == skip_types.end();
  };
  if (std::none_of(supported.begin(), supported.end(), [&](const LayerInfo* layer) { return is_quantized(*layer); }))
    invalid("Except skip_layers or skip_types, no layer need to quantize.");

  config_schema::check_batch_num(config.batch_num);
  config_schema::check_skip_fusion_layers(config.skip_fusion_layers, model);

  const std::optional<std::string> common_algo = common_act_algo(proto);
  const std::optional<bool> common_asym = common_asymmetric(proto);
  for (const LayerInfo* layer : supported) {
    LayerDraft draft =
        draft_layer(chosen_calibration(proto, *layer), *layer, is_quantized(*layer), config.linear_channel_wise);
    LayerQuantConfig& layer_config = draft.config;
    adjust_to_layer(layer_config, *layer);
    // A layer that leaves asymmetric unset follows the common config when it
    // uses the same activation algorithm and sets it, else activation_offset.
    bool asymmetric = config.activation_offset;
    if (draft.asymmetric) {
      asymmetric = *draft.asymmetric;
    } else if (common_asym && common_algo == layer_config.activation.act_algo) {
      asymmetric = *common_asym;
    }
    layer_config.activation.asymmetric = asymmetric && !config_schema::is_symmetric_only(layer->module_type);
    config_schema::check_layer_values(layer_config, *layer, config.linear_channel_wise);
    // AMCT drops a common-config ADA setting on layers ADA cannot handle
    // (after the schema check), leaving them with ARQ defaults.
    if (layer_config.weight.wts_algo == "ada_quantize" && !config_schema::supports_ada(layer->module_type))
      layer_config.weight = config_schema::default_layer_config(*layer, true, true, config.linear_channel_wise).weight;
    config.layers.push_back(std::move(layer_config));
  }

  std::sort(config.layers.begin(), config.layers.end(),
            [](const LayerQuantConfig& a, const LayerQuantConfig& b) { return a.name < b.name; });
  return config;
}

}  // namespace

QuantConfig make_config_from_simple(const std::string& simple_config_path, const ModelInfo& model) {
  return make_config_from_simple_text(read_file(simple_config_path, "simple config file"), simple_config_path, model);
}

bool simple_config_quantizes_subclasses(const std::string& text, const std::string& origin) {
  return parse_simple_config(text, origin).quantize_subclasses();
}

QuantConfig make_config_from_simple_text(const std::string& text, const std::string& origin, const ModelInfo& model) {
  const pb::AMCTConfig proto = parse_simple_config(text, origin);
  try {
    return build_config(proto, model);
  } catch (const Error& error) {
    fail(error.code(), "simple config '" + origin + "': " + error.what());
  }
}

}  // namespace amct
