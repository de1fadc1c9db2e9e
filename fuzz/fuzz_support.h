// Shared by the libFuzzer targets in this folder: the fixed model, record and
// module list the targets read their fuzzed input against, and the rule every
// target checks: bad input ends in an amct::Error with a message, nothing else.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <vector>

#include "amct/error.h"
#include "amct/layers.h"
#include "amct/onnx_graph.h"
#include "amct/opset_conversion.h"
#include "amct/record_check.h"
#include "amct/save_passes.h"
#include "onnx/onnx.pb.h"

namespace amct::fuzz {

// Runs `body`. An amct::Error is the expected answer to bad input; any other
// exception escapes and libFuzzer reports it as a crash, as it does signals
// and sanitizer findings.
template <typename Body>
void expect_clear_error(Body&& body) {
  try {
    body();
  } catch (const Error& error) {
    if (std::string(error.what()).empty()) {
      std::fprintf(stderr, "amct::Error without a message\n");
      std::abort();
    }
  }
}

inline std::string as_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// What save_model does between reading its inputs and writing its outputs,
// in memory (save_model syncs every output file to disk, which would slow
// the fuzzers down a hundredfold): the QDQ passes on a copy converted to
// opset 13 or later, the common passes, then the fake-quant and deploy passes
// on copies of the result, each serialized. Each output is tried on its own,
// as a refused QDQ model does not stop the others.
inline void run_save_pipeline(onnx::ModelProto model, const QuantPlan& plan) {
  auto& inputs = *model.mutable_graph()->mutable_input();
  for (int i = inputs.size() - 1; i >= 0; --i)
    if (find_initializer(model.graph(), inputs.Get(i).name())) inputs.DeleteSubrange(i, 1);
  const auto finish = [&](onnx::ModelProto output, SaveStage stage) {
    run_save_passes(*output.mutable_graph(), plan, stage);
    topological_sort(*output.mutable_graph());
    output.SerializeAsString();
  };
  expect_clear_error([&] {
    onnx::ModelProto qdq = model;
    if (default_opset(qdq) < 13) convert_opset(qdq, 13);
    finish(std::move(qdq), SaveStage::kQdq);
  });
  run_save_passes(*model.mutable_graph(), plan, SaveStage::kCommon);
  expect_clear_error([&] { finish(model, SaveStage::kFakeQuant); });
  expect_clear_error([&] { finish(model, SaveStage::kDeploy); });
}

// A small network with one layer of each common kind, in two forms:
// `exported` as torch's exporter writes it (opset 18, node names with module
// scopes in the metadata), else as quantize_model leaves it (opset 11, nodes
// named after the modules, op_data_type attributes): conv (Conv 2->4, 3x3) ->
// pool (AveragePool 2x2) -> deconv (ConvTranspose 4->2, stride 2) -> Flatten
// -> fc (Gemm 32->3, transB) -> mm (MatMul 3->2).
inline onnx::ModelProto fixed_model(bool exported) {
  onnx::ModelProto model;
  model.set_ir_version(exported ? 8 : 6);
  model.set_producer_name("amct-fuzz");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(exported ? 18 : 11);
  onnx::GraphProto& g = *model.mutable_graph();
  g.set_name("fuzz");
  const auto value_info = [](onnx::ValueInfoProto& info, const std::string& name, std::vector<int64_t> dims) {
    info.set_name(name);
    auto* tensor = info.mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) tensor->mutable_shape()->add_dim()->set_dim_value(d);
  };
  value_info(*g.add_input(), "x", {1, 2, 4, 4});
  value_info(*g.add_output(), "y", {1, 2});
  const auto init = [&](const std::string& name, std::vector<int64_t> dims) {
    const int64_t n = checked_numel(dims, name);
    std::vector<float> values;
    for (int64_t i = 0; i < n; ++i) values.push_back(static_cast<float>((i * 7) % 11 - 5) * 0.05f);
    *g.add_initializer() = make_float_tensor(name, dims, values);
  };
  const auto node = [&](const std::string& op, const std::string& module, const std::string& exported_name,
                        std::vector<std::string> inputs, const std::string& output, bool layer) -> onnx::NodeProto& {
    auto* n = g.add_node();
    n->set_op_type(op);
    n->set_name(exported ? exported_name : module);
    for (const auto& in : inputs) n->add_input(in);
    n->add_output(output);
    if (exported) {
      auto* scopes = n->add_metadata_props();
      scopes->set_key("pkg.torch.onnx.name_scopes");
      // The module path, then the op's own scope, as the dynamo exporter writes them.
      scopes->set_value("['', '" + module + "', '" + exported_name.substr(5) + "']");
    } else if (layer) {
      set_string_attribute(*n, "op_data_type", "float");
    }
    return *n;
  };
  init("conv.weight", {4, 2, 3, 3});
  init("conv.bias", {4});
  set_ints_attribute(node("Conv", "conv", "node_conv2d", {"x", "conv.weight", "conv.bias"}, "c", true), "pads",
                     {1, 1, 1, 1});
  auto& pool = node("AveragePool", "pool", "node_avg_pool2d", {"c"}, "p", true);
  set_ints_attribute(pool, "kernel_shape", {2, 2});
  set_ints_attribute(pool, "strides", {2, 2});
  init("deconv.weight", {4, 2, 2, 2});
  init("deconv.bias", {2});
  set_ints_attribute(node("ConvTranspose", "deconv", "node_conv_transpose2d", {"p", "deconv.weight", "deconv.bias"},
                          "d", true),
                     "strides", {2, 2});
  node("Flatten", "flatten", "node_flatten", {"d"}, "f", false);
  init("fc.weight", {3, 32});
  init("fc.bias", {3});
  set_int_attribute(node("Gemm", "fc", "node_linear", {"f", "fc.weight", "fc.bias"}, "g", true), "transB", 1);
  init("mm.weight", {3, 2});
  node("MatMul", "mm", "node_matmul", {"g", "mm.weight"}, "y", true);
  return model;
}

// A calibrated record for every layer of fixed_model.
inline const std::string& fixed_record() {
  static const std::string text = [] {
    const auto entry = [](const std::string& key, const std::string& fields) {
      return "record {\n  key: \"" + key + "\"\n  value {\n" + fields + "  }\n}\n";
    };
    const std::string weights = "    scale_w: 0.002\n    offset_w: 0\n";
    return entry("conv", "    scale_d: 0.0078125\n    offset_d: -3\n" + weights) +
           entry("pool", "    scale_d: 0.01\n    offset_d: 5\n    scale_w: 1.0\n    offset_w: 0\n") +
           entry("deconv", "    scale_d: 0.02\n    offset_d: 0\n" + weights) +
           entry("fc", "    scale_d: 0.004\n    offset_d: 30\n" + weights) +
           entry("mm", "    scale_d: 0.05\n    offset_d: -1\n" + weights);
  }();
  return text;
}

// The modules of fixed_model as the Python front end describes them.
inline std::vector<ModuleInfo> fixed_modules() {
  std::vector<ModuleInfo> modules;
  const auto add = [&](const std::string& name, const std::string& type, bool weight, bool bias) {
    ModuleInfo m;
    m.name = name;
    m.type = type;
    m.padding_mode = "zeros";
    m.has_weight = weight;
    m.has_bias = bias;
    m.weight_id = static_cast<int64_t>(modules.size()) + 1;
    modules.push_back(m);
  };
  add("", "Net", false, false);
  add("conv", "Conv2d", true, true);
  add("pool", "AvgPool2d", false, false);
  add("deconv", "ConvTranspose2d", true, true);
  add("flatten", "Flatten", false, false);
  add("fc", "Linear", true, true);
  add("mm", "Linear", true, false);
  return modules;
}

// The ModelInfo the config readers check a config against: the model of
// docs/amct-reference.md#example-config (tests/cpp/io/config_test_model.h),
// so the configs in tests/data/configs are valid seeds.
inline ModelInfo config_model_info() {
  ModelInfo info;
  const auto module = [&](const std::string& name, const std::string& type) {
    ModuleInfo m;
    m.name = name;
    m.type = type;
    m.padding_mode = "zeros";
    info.modules.push_back(m);
  };
  const auto layer = [&](const std::string& name, const std::string& type, int64_t cin, int64_t groups) {
    module(name, type);
    LayerInfo l;
    l.name = name;
    l.module_type = type;
    l.supported = true;
    l.has_bias = true;
    l.groups = groups;
    l.cin = cin;
    l.cout = 8;
    info.layers.push_back(l);
  };
  module("", "Net");
  layer("conv1", "Conv2d", 3, 1);
  module("bn1", "BatchNorm2d");
  module("relu", "ReLU");
  layer("dw", "Conv2d", 8, 8);
  layer("deconv", "ConvTranspose2d", 8, 1);
  layer("pool", "AvgPool2d", 8, 1);
  layer("fc", "Linear", 32, 1);
  return info;
}

}  // namespace amct::fuzz
