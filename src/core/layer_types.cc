// Module-level queries over the layer-kind table.
#include "amct/layer_kind.h"
#include "amct/layers.h"

namespace amct {

const std::vector<std::string>& quantizable_types() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> names;
    for (const ModuleKind& kind : module_kinds()) names.emplace_back(kind.torch_type);
    return names;
  }();
  return types;
}

bool is_quantizable_type(const std::string& type) { return find_module_kind(type) != nullptr; }

bool is_channel_wise_type(const std::string& type) {
  const ModuleKind* kind = find_module_kind(type);
  return kind && kind->channel_wise_default;
}

bool supports_int16(const LayerInfo& layer) {
  const ModuleKind* kind = find_module_kind(layer.module_type);
  return kind && kind->int16_activations && (!kind->int16_needs_bias || layer.has_bias);
}

const ModuleInfo* ModelInfo::find_module(const std::string& name) const {
  for (const auto& m : modules)
    if (m.name == name) return &m;
  return nullptr;
}

const LayerInfo* ModelInfo::find_layer(const std::string& name) const {
  for (const auto& l : layers)
    if (l.name == name) return &l;
  return nullptr;
}

}  // namespace amct
