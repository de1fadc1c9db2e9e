// The quantization configuration: AMCT's config JSON (docs/amct-reference.md#config-json to #example-config) and the
// simple config text-proto (docs/amct-reference.md#simple-config to #simple-config-example), validated against the model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "amct/layers.h"

namespace amct {

struct ActivationQuantParams {
  int num_bits = 8;
  std::string act_algo = "ifmr";  // "ifmr" or "hfmg"
  // IFMR
  double max_percentile = 0.999999;
  double min_percentile = 0.999999;
  double search_range_start = 0.7;
  double search_range_end = 1.3;
  double search_step = 0.01;
  // HFMG
  int num_of_bins = 4096;
  // Resolved value: the layer's "asymmetric", else the root activation_offset.
  bool asymmetric = true;
};

struct WeightQuantParams {
  int num_bits = 8;
  bool channel_wise = true;
  std::string wts_algo = "arq_quantize";  // "arq_quantize" or "ada_quantize"
  // ada_quantize only
  double reg_param = 0.01;
  double warm_start = 0.2;
  int64_t num_iteration = 10000;
  double beta_range_start = 20.0;
  double beta_range_end = 2.0;
  // Beyond AMCT, opt-in: where the rounding starts. "kl" is AMCT's KL search
  // (it clips up to 7.4% of max|W|, which AdaRound cannot undo); "arq" is
  // ARQ's max|W| scale (docs/amct-reference.md#ada_quantize).
  std::string init_scale = "kl";
};

struct LayerQuantConfig {
  std::string name;
  bool quant_enable = true;
  std::optional<double> dmq_balancer_param;
  ActivationQuantParams activation;
  WeightQuantParams weight;
};

struct QuantConfig {
  int version = 1;
  int64_t batch_num = 1;
  bool activation_offset = true;
  bool do_fusion = true;
  std::string fakequant_precision_mode = "DEFAULT";  // or "FORCE_FP16_QUANT"
  std::vector<std::string> skip_fusion_layers;
  // Beyond AMCT's schema (root key "quantize_subclasses", written only when
  // false): subclasses of the quantizable classes are layers too. false is
  // AMCT's exact-class matching (PrepareOptions::quantize_subclasses).
  bool quantize_subclasses = true;
  // Beyond AMCT's schema (root key "linear_channel_wise", written only when
  // true): Linear layers may take channel_wise true, one weight scale per
  // output channel, and default to it. false is AMCT's rule (per tensor only).
  bool linear_channel_wise = false;
  // Beyond AMCT's schema (root key "quantize_activation_matmuls", written
  // only when true): the QDQ model quantizes both inputs of each MatMul
  // between two activations (attention), calibrated like the layers' inputs.
  bool quantize_activation_matmuls = false;
  std::vector<LayerQuantConfig> layers;  // sorted by name

  const LayerQuantConfig* find_layer(const std::string& name) const;
};

// create_quant_config from parameters (docs/amct-reference.md#create_quant_config): every supported layer gets
// the default block; skip_layers get quant_enable=false.
// `linear_channel_wise` is QuantConfig::linear_channel_wise.
QuantConfig make_default_config(const ModelInfo& model, const std::vector<std::string>& skip_layers,
                                int64_t batch_num, bool activation_offset, bool linear_channel_wise = false);

// create_quant_config from a simple config file (docs/amct-reference.md#simple-config), with its override
// precedence and automatic adjustments.
QuantConfig make_config_from_simple(const std::string& simple_config_path, const ModelInfo& model);
// The same from the file's text; `origin` names the source in error messages.
QuantConfig make_config_from_simple_text(const std::string& text, const std::string& origin, const ModelInfo& model);

// The JSON text exactly as AMCT writes it (indent 4, ',' and ':' separators,
// schema key order, layers sorted by name).
std::string config_to_json(const QuantConfig& config);

// The config's quantize_subclasses (true when absent), read before the model
// is prepared, since which modules are layers depends on it. A file that is
// not valid JSON, or a value that is not a bool, fails as the full reader does.
bool config_quantizes_subclasses(const std::string& text, const std::string& origin);
// The same for a simple config's text.
bool simple_config_quantizes_subclasses(const std::string& text, const std::string& origin);

// Parses and validates a config JSON file against the model (docs/amct-reference.md#config-json, #reading-a-config).
// Errors name the file, the layer and the key. Supported layers missing from
// the file get defaults with quant_enable=false.
QuantConfig parse_config_file(const std::string& path, const ModelInfo& model);

// Parses config JSON text; `origin` names the source in error messages.
QuantConfig parse_config_text(const std::string& text, const std::string& origin, const ModelInfo& model);

}  // namespace amct
