// The model of docs/amct-reference.md#example-config (Conv2d+BN+ReLU -> depthwise Conv2d -> ConvTranspose2d
// -> AvgPool2d -> Linear) as the Python front end describes it, plus helpers
// shared by the config tests.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "amct/config.h"
#include "amct/error.h"
#include "amct/layers.h"

namespace amct::config_test {

inline void add_module(ModelInfo& model, const std::string& name, const std::string& type) {
  ModuleInfo module;
  module.name = name;
  module.type = type;
  module.layer_type = is_quantizable_type(type) ? type : "";
  module.padding_mode = "zeros";
  model.modules.push_back(module);
}

inline void add_layer(ModelInfo& model, const std::string& name, const std::string& type, int64_t cin,
                      int64_t groups = 1, bool has_bias = true, bool supported = true) {
  add_module(model, name, type);
  LayerInfo layer;
  layer.name = name;
  layer.module_type = type;
  layer.supported = supported;
  layer.has_bias = has_bias;
  layer.groups = groups;
  layer.cin = cin;
  layer.cout = 8;
  model.layers.push_back(layer);
}

// conv1 (Conv2d, Cin 3), dw (depthwise Conv2d, groups 8), deconv
// (ConvTranspose2d), pool (AvgPool2d), fc (Linear with bias).
inline ModelInfo spec_model() {
  ModelInfo model;
  add_module(model, "", "Net");
  add_layer(model, "conv1", "Conv2d", 3);
  add_module(model, "bn1", "BatchNorm2d");
  add_module(model, "relu", "ReLU");
  add_layer(model, "dw", "Conv2d", 8, 8);
  add_layer(model, "deconv", "ConvTranspose2d", 8);
  add_layer(model, "pool", "AvgPool2d", 8);
  add_layer(model, "fc", "Linear", 32);
  return model;
}

// spec_model plus a Conv3d, a Linear without bias and a Conv2d that failed
// the support checks (e.g. reflect padding).
inline ModelInfo extended_model() {
  ModelInfo model = spec_model();
  add_layer(model, "conv3d", "Conv3d", 4);
  add_layer(model, "fc_nobias", "Linear", 4, 1, false);
  add_layer(model, "reflect_conv", "Conv2d", 4, 1, true, false);
  return model;
}

inline std::string data_path(const std::string& name) { return std::string(AMCT_TEST_DATA_DIR) + "/configs/" + name; }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The message of the amct::Error `body` throws ("" if it throws none).
template <typename Body>
std::string error_of(Body&& body, ErrorCode* code = nullptr) {
  try {
    body();
  } catch (const Error& error) {
    if (code) *code = error.code();
    return error.what();
  }
  return "";
}

inline void expect_same_layer(const LayerQuantConfig& a, const LayerQuantConfig& b) {
  SCOPED_TRACE("layer " + a.name);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.quant_enable, b.quant_enable);
  EXPECT_EQ(a.dmq_balancer_param, b.dmq_balancer_param);
  EXPECT_EQ(a.activation.num_bits, b.activation.num_bits);
  EXPECT_EQ(a.activation.act_algo, b.activation.act_algo);
  EXPECT_EQ(a.activation.max_percentile, b.activation.max_percentile);
  EXPECT_EQ(a.activation.min_percentile, b.activation.min_percentile);
  EXPECT_EQ(a.activation.search_range_start, b.activation.search_range_start);
  EXPECT_EQ(a.activation.search_range_end, b.activation.search_range_end);
  EXPECT_EQ(a.activation.search_step, b.activation.search_step);
  EXPECT_EQ(a.activation.num_of_bins, b.activation.num_of_bins);
  EXPECT_EQ(a.activation.asymmetric, b.activation.asymmetric);
  EXPECT_EQ(a.weight.num_bits, b.weight.num_bits);
  EXPECT_EQ(a.weight.channel_wise, b.weight.channel_wise);
  EXPECT_EQ(a.weight.wts_algo, b.weight.wts_algo);
  EXPECT_EQ(a.weight.reg_param, b.weight.reg_param);
  EXPECT_EQ(a.weight.warm_start, b.weight.warm_start);
  EXPECT_EQ(a.weight.num_iteration, b.weight.num_iteration);
  EXPECT_EQ(a.weight.beta_range_start, b.weight.beta_range_start);
  EXPECT_EQ(a.weight.beta_range_end, b.weight.beta_range_end);
  EXPECT_EQ(a.weight.init_scale, b.weight.init_scale);
}

inline void expect_same_config(const QuantConfig& a, const QuantConfig& b) {
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.batch_num, b.batch_num);
  EXPECT_EQ(a.activation_offset, b.activation_offset);
  EXPECT_EQ(a.do_fusion, b.do_fusion);
  EXPECT_EQ(a.fakequant_precision_mode, b.fakequant_precision_mode);
  EXPECT_EQ(a.skip_fusion_layers, b.skip_fusion_layers);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) expect_same_layer(a.layers[i], b.layers[i]);
}

}  // namespace amct::config_test
