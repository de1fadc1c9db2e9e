// Rules of AMCT's config schema (docs/amct-reference.md#config-json) shared by the three ways a config
// is made: from parameters, from a simple config, and from a JSON file. All
// checks throw amct::Error with AMCT's wording; callers add the file name.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "amct/config.h"
#include "amct/layers.h"

namespace amct::config_schema {

// Root-level keys, in the order AMCT writes them.
const std::vector<std::string>& root_keys();
bool is_root_key(std::string_view key);

// Python's repr of a list of strings, as AMCT prints it in messages: ['a', 'b'].
std::string python_list(const std::vector<std::string>& items);

// Items that occur more than once, each listed once, in order of repetition.
std::vector<std::string> repeated_items(const std::vector<std::string>& items);

// Throws "Please delete repeated items in <what>, repeated items are [...]"
// when an item occurs more than once.
void check_no_repeated(const std::vector<std::string>& items, const std::string& what);

// The model's supported layers in named_modules() order. Throws when there is
// none, or when one is named like a root key (its entry would be ambiguous).
std::vector<const LayerInfo*> supported_layers(const ModelInfo& model);

// create_quant_config's skip_layers rules: no duplicates, every name is a
// module, and every module is of a quantizable class.
void check_skip_layers(const std::vector<std::string>& skip_layers, const ModelInfo& model);

void check_batch_num(int64_t batch_num);
void check_fakequant_precision_mode(const std::string& mode);
// Every entry names a Conv1d/2d/3d module, at most once.
void check_skip_fusion_layers(const std::vector<std::string>& layers, const ModelInfo& model);

// Per-type capabilities (docs/amct-reference.md#supported-layers).
bool supports_dmq(const std::string& type);
bool supports_ada(const std::string& type);
bool supports_int6_int7_weights(const std::string& type);
bool is_symmetric_only(const std::string& type);
// Whether a layer of `type` may take one weight scale per output channel:
// AMCT's channel-wise types, and Linear when the config opts in with
// linear_channel_wise (beyond AMCT). It is also the type's default.
bool channel_wise_allowed(const std::string& type, bool linear_channel_wise);

// The block AMCT fills for a layer without settings: IFMR activations, ARQ
// weights, channel_wise by type (channel_wise_allowed); Conv3d is always symmetric.
LayerQuantConfig default_layer_config(const LayerInfo& layer, bool quant_enable, bool asymmetric,
                                      bool linear_channel_wise);

// Value ranges and type rules of one layer entry (docs/amct-reference.md#config-json); messages end
// with "in layer <name>". A Linear with channel_wise true fails with AMCT's
// message unless `linear_channel_wise`.
void check_layer_values(const LayerQuantConfig& config, const LayerInfo& layer, bool linear_channel_wise);

}  // namespace amct::config_schema
