// Builders for the small modified-ONNX graphs and record files of the
// save_model tests, and accessors for the models it writes.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_model.h"
#include "onnx/onnx.pb.h"

namespace amct::test {

class ModelBuilder {
 public:
  explicit ModelBuilder(int64_t opset = 18) {
    model_.set_ir_version(8);
    model_.set_producer_name("amct-test");
    auto* op = model_.add_opset_import();
    op->set_domain("");
    op->set_version(opset);
    model_.mutable_graph()->set_name("g");
  }

  // A dim of -1 is dynamic ("batch"); no dims leave the shape unknown.
  ModelBuilder& input(const std::string& name, const std::vector<int64_t>& dims) {
    value_info(*graph().add_input(), name, dims);
    return *this;
  }
  ModelBuilder& output(const std::string& name, const std::vector<int64_t>& dims) {
    value_info(*graph().add_output(), name, dims);
    return *this;
  }
  ModelBuilder& initializer(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& values) {
    *graph().add_initializer() = make_float_tensor(name, dims, values);
    return *this;
  }
  onnx::NodeProto& node(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs) {
    auto* n = graph().add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return *n;
  }
  // A quantizable layer as quantize_model leaves it: named after its module,
  // with the op_data_type attribute.
  onnx::NodeProto& layer(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                         const std::string& output, const std::string& data_type = "float") {
    onnx::NodeProto& n = node(op, name, inputs, {output});
    set_string_attribute(n, "op_data_type", data_type);
    return n;
  }

  onnx::GraphProto& graph() { return *model_.mutable_graph(); }
  const onnx::ModelProto& model() const { return model_; }

 private:
  static void value_info(onnx::ValueInfoProto& info, const std::string& name, const std::vector<int64_t>& dims) {
    info.set_name(name);
    auto* tensor = info.mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    if (dims.empty()) return;
    auto* shape = tensor->mutable_shape();
    for (auto d : dims) {
      auto* dim = shape->add_dim();
      if (d < 0) {
        dim->set_dim_param("batch");
      } else {
        dim->set_dim_value(d);
      }
    }
  }

  onnx::ModelProto model_;
};

// A fresh directory per test under the gtest temp dir.
inline std::string fresh_dir() {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "amct_save" /
                                    (std::string(info->test_suite_name()) + "." + info->name() + "." +
                                     std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// One record entry in AMCT's text format; `fields` is the value body.
inline std::string record_entry(const std::string& key, const std::string& fields) {
  return "record {\n  key: \"" + key + "\"\n  value {\n" + fields + "  }\n}\n";
}

// x[N,2,3,3] -> Conv conv1 (W [2,2,1,1] on the scale_w grid, bias [2]) -> y,
// and its record with a given scale_d.
inline onnx::ModelProto conv_model() {
  ModelBuilder b;
  b.input("x", {-1, 2, 3, 3}).output("y", {-1, 2, 3, 3});
  b.initializer("conv1.weight", {2, 2, 1, 1}, {5 * 0.001f, -128 * 0.001f, 127 * 0.002f, -77 * 0.002f});
  b.initializer("conv1.bias", {2}, {0.5f, -0.25f});
  b.layer("Conv", "conv1", {"x", "conv1.weight", "conv1.bias"}, "y");
  return b.model();
}

inline std::string conv_record(const std::string& scale_d) {
  return record_entry("conv1", "    scale_d: " + scale_d +
                                   "\n    offset_d: 10\n    scale_w: 0.001\n    scale_w: 0.002\n"
                                   "    offset_w: 0\n    offset_w: 0\n    act_type: \"INT8\"\n    wts_type: \"INT8\"\n");
}

// The output models of one save_model run.
struct Saved {
  onnx::ModelProto deploy;
  onnx::ModelProto fake_quant;
  onnx::ModelProto qdq;
};

inline Saved run_save(const onnx::ModelProto& model, const std::string& record_text, const std::string& dir) {
  save_onnx_model(model, dir + "/modified.onnx");
  write_text(dir + "/record.txt", record_text);
  const auto written = save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net").written;
  EXPECT_EQ(written, (std::vector<std::string>{dir + "/out/net_deploy_model.onnx", dir + "/out/net_fake_quant_model.onnx",
                                               dir + "/out/net_qdq_model.onnx"}));
  return {load_onnx_model(written.at(0)), load_onnx_model(written.at(1)), load_onnx_model(written.at(2))};
}

inline const onnx::NodeProto& node_named(const onnx::ModelProto& model, const std::string& name) {
  const onnx::NodeProto* node = find_node(model.graph(), name);
  if (!node) throw std::runtime_error("no node '" + name + "'");
  return *node;
}

inline const onnx::TensorProto& initializer_named(const onnx::ModelProto& model, const std::string& name) {
  const onnx::TensorProto* tensor = find_initializer(model.graph(), name);
  if (!tensor) throw std::runtime_error("no initializer '" + name + "'");
  return *tensor;
}

inline std::vector<std::string> node_names(const onnx::ModelProto& model) {
  std::vector<std::string> names;
  for (const auto& n : model.graph().node()) names.push_back(n.name());
  return names;
}

inline std::vector<std::string> op_types(const onnx::ModelProto& model) {
  std::vector<std::string> ops;
  for (const auto& n : model.graph().node()) ops.push_back(n.op_type());
  return ops;
}

inline std::vector<int> int8_values(const onnx::TensorProto& tensor) {
  std::vector<int> out;
  for (char c : tensor.raw_data()) out.push_back(static_cast<int8_t>(c));
  return out;
}

inline std::vector<int64_t> dims_of(const onnx::TensorProto& tensor) { return tensor_dims(tensor); }

// The tensor value of a Constant node.
inline const onnx::TensorProto& constant_value(const onnx::ModelProto& model, const std::string& name) {
  return find_attribute(node_named(model, name), "value")->t();
}

inline float float_bits_to_value(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace amct::test
