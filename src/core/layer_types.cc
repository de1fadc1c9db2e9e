#include <algorithm>

#include "amct/layers.h"

namespace amct {

const std::vector<std::string>& quantizable_types() {
  static const std::vector<std::string> types = {"Conv2d", "Conv3d",          "Linear",          "ConvTranspose2d", "AvgPool2d",
                                                 "Conv1d", "ConvTranspose1d", "GRU",             "LSTM"};
  return types;
}

bool is_quantizable_type(const std::string& type) {
  const auto& types = quantizable_types();
  return std::find(types.begin(), types.end(), type) != types.end();
}

bool is_channel_wise_type(const std::string& type) {
  return type == "Conv2d" || type == "Conv3d" || type == "ConvTranspose2d" || type == "Conv1d" || type == "LSTM" ||
         type == "GRU" || type == "ConvTranspose1d";
}

bool supports_int16(const LayerInfo& layer) {
  const std::string& t = layer.module_type;
  if (t == "Linear") return layer.has_bias;
  return t == "Conv2d" || t == "ConvTranspose2d" || t == "Conv1d" || t == "ConvTranspose1d" || t == "GRU" || t == "LSTM";
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
