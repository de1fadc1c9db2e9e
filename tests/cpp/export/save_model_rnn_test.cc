// LSTM/GRU in save_model: the ONNX-level limits, the record's scale_h /
// offset_h / scale_r / offset_r, the deploy op of ReplaceRNN node by node,
// the fake-quant model's quantized X and initial_h in front of the standard
// op with float W, R and B, and the gate reordering for the calibration model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "amct/error.h"
#include "amct/layer_graph.h"
#include "amct/rnn_weights.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

constexpr int kHidden = 2;
constexpr int kRows = 3 * kHidden;  // GRU gates

// x[T,B,2], h0[1,B,2] -> GRU rnn (W, R on the grids of scale_w 0.01 and
// scale_r 0.02, B on the accumulators' grids) -> y.
onnx::ModelProto gru_model() {
  ModelBuilder b;
  b.input("x", {5, -1, 2}).input("h0", {1, -1, kHidden}).output("y", {5, 1, -1, kHidden});
  std::vector<float> w, r, bias;
  for (int i = 0; i < kRows * 2; ++i) w.push_back(static_cast<float>(i - 6) * 0.01f);
  for (int i = 0; i < kRows * kHidden; ++i) r.push_back(static_cast<float>(3 * i - 17) * 0.02f);
  // deq_w = 0.01 * 0.1, deq_r = 0.02 * 0.05: Wb integers j+1, Rb integers 2(j+1).
  for (int j = 0; j < kRows; ++j) bias.push_back(0.001f * static_cast<float>(j + 1));
  for (int j = 0; j < kRows; ++j) bias.push_back(0.002f * static_cast<float>(j + 1));
  b.initializer("rnn.weight_ih", {1, kRows, 2}, w);
  b.initializer("rnn.weight_hh", {1, kRows, kHidden}, r);
  b.initializer("rnn.bias", {1, 2 * kRows}, bias);
  onnx::NodeProto& node = b.layer("GRU", "rnn", {"x", "rnn.weight_ih", "rnn.weight_hh", "rnn.bias", "", "h0"}, "y");
  set_int_attribute(node, "hidden_size", kHidden);
  set_int_attribute(node, "linear_before_reset", 1);
  return b.model();
}

std::string gru_record(const std::string& extra = "") {
  return record_entry("rnn", "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.01\n    offset_w: 0\n"
                             "    act_type: \"INT8\"\n    wts_type: \"INT8\"\n    scale_h: 0.05\n    offset_h: -2\n"
                             "    scale_r: 0.02\n    offset_r: 0\n" + extra);
}

float attr_f(const onnx::NodeProto& node, const std::string& name) { return find_attribute(node, name)->f(); }
int64_t attr_i(const onnx::NodeProto& node, const std::string& name) { return find_attribute(node, name)->i(); }

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

TEST(SaveModelRnn, DeployReplacesTheGruByAmctsOpNodeByNode) {
  const Saved saved = run_save(gru_model(), gru_record(), fresh_dir());
  const onnx::ModelProto& deploy = saved.deploy;
  // No AscendQuant/AscendDequant around the op: it quantizes X and H itself.
  EXPECT_EQ(op_types(deploy), (std::vector<std::string>{"BasicGRUInplaceFillWindowCache"}));
  const onnx::NodeProto& node = node_named(deploy, "rnn");
  EXPECT_EQ(node.domain(), "");
  EXPECT_EQ(std::vector<std::string>(node.input().begin(), node.input().end()),
            (std::vector<std::string>{"x", "rnn.weight_ih", "rnn.weight_hh", "h0", "rnn.bias", "", "",
                                      "rnn.dequant.param"}));
  EXPECT_EQ(attr_i(node, "hidden_size"), kHidden);
  EXPECT_EQ(attr_i(node, "linear_before_reset"), 1);
  EXPECT_EQ(find_attribute(node, "direction")->s(), "forward");
  EXPECT_EQ(attr_f(node, "clip"), -1.0f);
  EXPECT_EQ(find_attribute(node, "activations")->type(), onnx::AttributeProto::STRINGS);
  EXPECT_EQ(find_attribute(node, "activations")->strings_size(), 0);
  EXPECT_EQ(attr_i(node, "quant_sqrt_mode_x"), 0);
  EXPECT_EQ(attr_i(node, "quant_sqrt_mode_h"), 0);
  EXPECT_EQ(attr_f(node, "quant_scale_x"), static_cast<float>(1.0 / static_cast<double>(0.1f)));
  EXPECT_EQ(attr_f(node, "quant_offset_x"), 3.0f);
  EXPECT_EQ(attr_f(node, "quant_scale_h"), static_cast<float>(1.0 / static_cast<double>(0.05f)));
  EXPECT_EQ(attr_f(node, "quant_offset_h"), -2.0f);
  EXPECT_EQ(attr_i(node, "quant_dtype"), 2);
  EXPECT_FALSE(find_attribute(node, "op_data_type"));

  std::vector<int> w, r;
  for (int i = 0; i < kRows * 2; ++i) w.push_back(i - 6);
  for (int i = 0; i < kRows * kHidden; ++i) r.push_back(3 * i - 17);
  EXPECT_EQ(int8_values(initializer_named(deploy, "rnn.weight_ih")), w);
  EXPECT_EQ(int8_values(initializer_named(deploy, "rnn.weight_hh")), r);
  const onnx::TensorProto& bias = initializer_named(deploy, "rnn.bias");
  ASSERT_EQ(bias.data_type(), onnx::TensorProto::INT32);
  std::vector<int32_t> expected_bias;
  for (int j = 0; j < kRows; ++j) expected_bias.push_back(j + 1);
  for (int j = 0; j < kRows; ++j) expected_bias.push_back(2 * (j + 1));
  EXPECT_EQ(std::vector<int32_t>(bias.int32_data().begin(), bias.int32_data().end()), expected_bias);
  // scale_d * scale_w, then scale_h * scale_r, as AscendDequant packs them.
  const onnx::TensorProto& param = initializer_named(deploy, "rnn.dequant.param");
  ASSERT_EQ(param.data_type(), onnx::TensorProto::UINT64);
  EXPECT_EQ(std::vector<uint64_t>(param.uint64_data().begin(), param.uint64_data().end()),
            (std::vector<uint64_t>{bits_of(0.01f * 0.1f), bits_of(0.02f * 0.05f)}));
}

TEST(SaveModelRnn, FakeQuantQuantizesXAndInitialHInFrontOfTheStandardOp) {
  const Saved saved = run_save(gru_model(), gru_record(), fresh_dir());
  const onnx::ModelProto& fake = saved.fake_quant;
  const onnx::NodeProto& node = node_named(fake, "rnn");
  EXPECT_EQ(node.op_type(), "GRU");
  EXPECT_EQ(node.input(0), "rnn.antiquant.output0");
  EXPECT_EQ(node.input(5), "rnn.h_antiquant.output0");
  EXPECT_EQ(node_named(fake, "rnn.antiquant.fake_antiquant.mul").op_type(), "Mul");
  EXPECT_EQ(tensor_to_floats(constant_value(fake, "rnn.antiquant.fake_antiquant.scale"))[0], 0.1f);
  EXPECT_EQ(tensor_to_floats(constant_value(fake, "rnn.h_antiquant.fake_antiquant.scale"))[0], 0.05f);
  EXPECT_EQ(tensor_to_floats(constant_value(fake, "rnn.quant.fakequant.scale"))[0],
            static_cast<float>(1.0 / static_cast<double>(0.1f)));
  EXPECT_EQ(tensor_to_floats(constant_value(fake, "rnn.h_quant.fakequant.offset"))[0], -2.0f);
  EXPECT_EQ(node_named(fake, "rnn.h_quant.fakequant.sub").input(0), "rnn.h_quant.fakequant.clip.output0");
  for (const auto& n : fake.graph().node()) EXPECT_NE(n.op_type().rfind("Ascend", 0), 0u) << n.name();
  // W and R hold w_int * scale, B the integers times their accumulator's scale.
  const std::vector<float> w = tensor_to_floats(initializer_named(fake, "rnn.weight_ih"));
  for (int i = 0; i < kRows * 2; ++i) EXPECT_EQ(w[i], static_cast<float>(i - 6) * 0.01f) << i;
  const std::vector<float> r = tensor_to_floats(initializer_named(fake, "rnn.weight_hh"));
  for (int i = 0; i < kRows * kHidden; ++i) EXPECT_EQ(r[i], static_cast<float>(3 * i - 17) * 0.02f) << i;
  const std::vector<float> bias = tensor_to_floats(initializer_named(fake, "rnn.bias"));
  for (int j = 0; j < kRows; ++j) {
    EXPECT_EQ(bias[j], static_cast<float>(j + 1) * (0.01f * 0.1f)) << j;
    EXPECT_EQ(bias[kRows + j], static_cast<float>(2 * (j + 1)) * (0.02f * 0.05f)) << j;
  }
  // The QDQ model keeps the GRU in float.
  EXPECT_EQ(node_named(saved.qdq, "rnn").op_type(), "GRU");
  EXPECT_EQ(initializer_named(saved.qdq, "rnn.weight_ih").data_type(), onnx::TensorProto::FLOAT);
}

TEST(SaveModelRnn, PerGateScaleListsApplyToEveryRowOfTheirGate) {
  // AMCT reads 3 (GRU) values as per-gate scales.
  const std::string record = record_entry(
      "rnn", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.01\n    scale_w: 0.01\n    scale_w: 0.02\n"
             "    offset_w: 0\n    offset_w: 0\n    offset_w: 0\n    scale_h: 0.05\n    offset_h: 0\n"
             "    scale_r: 0.02\n    scale_r: 0.02\n    scale_r: 0.02\n    offset_r: 0\n    offset_r: 0\n"
             "    offset_r: 0\n");
  const Saved saved = run_save(gru_model(), record, fresh_dir());
  const onnx::TensorProto& param = initializer_named(saved.deploy, "rnn.dequant.param");
  ASSERT_EQ(param.uint64_data_size(), 2 * kRows);
  for (int row = 0; row < kRows; ++row)
    EXPECT_EQ(param.uint64_data(row), bits_of((row < 2 * kHidden ? 0.01f : 0.02f) * 0.1f)) << row;
  // The third gate's W rows are integerized with 0.02: (i - 6) * 0.01 / 0.02.
  const std::vector<int> w = int8_values(initializer_named(saved.deploy, "rnn.weight_ih"));
  EXPECT_EQ(w[8], 1);   // 0.02 / 0.02
  EXPECT_EQ(w[10], 2);  // 0.04 / 0.02
}

void expect_record_error(const std::string& record, const std::string& message) {
  const std::string dir = fresh_dir();
  save_onnx_model(gru_model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt", record);
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
    FAIL() << "save_model accepted the record";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "record file '" + dir + "/record.txt', layer 'rnn': " + message);
  }
}

TEST(SaveModelRnn, RecordErrorsNameTheField) {
  expect_record_error(record_entry("rnn", "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.01\n    offset_w: 0\n"
                                          "    scale_r: 0.02\n    offset_r: 0\n"),
                      "scale_h is missing: the hidden state of this GRU was not calibrated (save_model was called "
                      "before the calibration model ran batch_num batches)");
  expect_record_error(record_entry("rnn", "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.01\n    offset_w: 0\n"
                                          "    scale_h: 0.05\n    offset_h: 0\n"),
                      "scale_r is missing; expected the recurrence weight scales written by quantize_model");
  expect_record_error(gru_record().replace(gru_record().find("offset_r: 0"), 11, "offset_r: 1"),
                      "offset_r contains 1; expected 0 (weights are symmetric)");
  expect_record_error(gru_record().replace(gru_record().find("offset_h: -2"), 12, "offset_h: 200"),
                      "offset_h is 200; expected a value in [-128, 127] for INT8 activations");
  expect_record_error(gru_record().replace(gru_record().find("scale_r: 0.02\n    offset_r: 0\n"), 29,
                                           "scale_r: 0.02\n    scale_r: 0.02\n    offset_r: 0\n    offset_r: 0\n"),
                      "scale_r has 2 values; expected 1 (per tensor), 3 (per gate) or 6 (one per gate row)");
  expect_record_error(gru_record().replace(gru_record().find("scale_w: 0.01\n    offset_w: 0\n"), 29,
                                           "scale_w: 0.01\n    scale_w: 0.01\n    offset_w: 0\n    offset_w: 0\n"),
                      "scale_w has 2 values; expected 1 (per tensor) or 6 (one per output channel) or 3 (per gate)");
  expect_record_error(gru_record().replace(gru_record().find("scale_h: 0.05"), 13, "scale_h: 0"),
                      "scale_h is 0; expected a finite value greater than 0 (a normal float32)");
}

TEST(SaveModelRnn, OnlyRnnLayersMayCarryHiddenStateFactors) {
  const std::string dir = fresh_dir();
  save_onnx_model(conv_model(), dir + "/modified.onnx");
  std::string record = conv_record("0.1");
  record.insert(record.find("  }\n}"), "    scale_h: 0.05\n");
  write_text(dir + "/record.txt", record);
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
    FAIL() << "save_model accepted scale_h on a Conv";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "record file '" + dir + "/record.txt', layer 'conv1': scale_h/offset_h/scale_r/"
                                     "offset_r belong to LSTM/GRU layers; this layer is Conv");
  }
}

TEST(RnnLimits, OnnxLevelLimitsGiveAReason) {
  const auto reason = [](const std::function<void(onnx::GraphProto&, onnx::NodeProto&)>& change) {
    onnx::ModelProto model = gru_model();
    onnx::GraphProto& graph = *model.mutable_graph();
    onnx::NodeProto& node = *find_node(graph, "rnn");
    change(graph, node);
    return unquantizable_reason(graph, node);
  };
  EXPECT_EQ(reason([](onnx::GraphProto&, onnx::NodeProto&) {}), "");
  EXPECT_EQ(reason([](onnx::GraphProto&, onnx::NodeProto& n) { set_string_attribute(n, "direction", "bidirectional"); }),
            "its direction is \"bidirectional\" (bidirectional or reverse); only \"forward\" is quantizable");
  EXPECT_EQ(reason([](onnx::GraphProto&, onnx::NodeProto& n) { set_float_attribute(n, "clip", 3.0f); }),
            "it sets the attribute 'clip'; only the default activations without clip are quantizable");
  EXPECT_EQ(reason([](onnx::GraphProto&, onnx::NodeProto& n) { set_int_attribute(n, "layout", 1); }),
            "its layout is 1 (batch first); expected 0");
  EXPECT_EQ(reason([](onnx::GraphProto&, onnx::NodeProto& n) { set_int_attribute(n, "linear_before_reset", 0); }),
            "its linear_before_reset is 0; expected 1, as torch's GRU exports");
  EXPECT_EQ(reason([](onnx::GraphProto&, onnx::NodeProto& n) { n.set_input(4, "x"); }),
            "it takes sequence_lens (input 4); expected none");
  EXPECT_EQ(reason([](onnx::GraphProto& g, onnx::NodeProto& n) {
              *g.add_initializer() = make_float_tensor("zeros", {1, 1, kHidden}, std::vector<float>(kHidden, 0.0f));
              n.set_input(5, "zeros");
            }),
            "its initial_h (input 5) does not come from a model input; pass the initial state (hx) to forward()");
  // Zeros expanded to the input's shape (torch's made-up state) do not come from the input.
  EXPECT_EQ(reason([](onnx::GraphProto& g, onnx::NodeProto& n) {
              *g.add_initializer() = make_float_tensor("zero", {1}, std::vector<float>{0.0f});
              auto* shape = g.add_node();
              shape->set_op_type("Shape");
              shape->add_input("x");
              shape->add_output("x_shape");
              auto* expand = g.add_node();
              expand->set_op_type("Expand");
              expand->add_input("zero");
              expand->add_input("x_shape");
              expand->add_output("state");
              n.set_input(5, "state");
            }),
            "its initial_h (input 5) does not come from a model input; pass the initial state (hx) to forward()");
  // A state computed from the input's values does.
  EXPECT_EQ(reason([](onnx::GraphProto& g, onnx::NodeProto& n) {
              auto* neg = g.add_node();
              neg->set_op_type("Neg");
              neg->add_input("h0");
              neg->add_output("state");
              n.set_input(5, "state");
            }),
            "");
  EXPECT_EQ(reason([](onnx::GraphProto&, onnx::NodeProto& n) { n.mutable_input()->RemoveLast(); }),
            "its initial_h (input 5) does not come from a model input; pass the initial state (hx) to forward()");
  EXPECT_EQ(reason([](onnx::GraphProto& g, onnx::NodeProto&) {
              onnx::TensorProto& w = *find_initializer(g, "rnn.weight_ih");
              w.set_dims(0, 2);
              w.set_dims(1, kRows / 2);
            }),
            "its W is not [1, gates x hidden, size] (one direction)");
}

TEST(RnnWeights, OnnxGateOrderToTorchOrder) {
  // One row per gate: ONNX LSTM i,o,f,c -> torch i,f,g,o; GRU z,r,h -> r,z,n.
  EXPECT_EQ(onnx_gates_to_torch_order(std::vector<float>{0, 1, 2, 3}, "LSTM", 1),
            (std::vector<float>{0, 2, 3, 1}));
  EXPECT_EQ(onnx_gates_to_torch_order(std::vector<float>{0, 0, 1, 1, 2, 2}, "GRU", 2),
            (std::vector<float>{1, 1, 0, 0, 2, 2}));
  EXPECT_THROW(onnx_gates_to_torch_order(std::vector<float>{0, 1, 2, 3, 4}, "GRU", 1), Error);
}

}  // namespace
}  // namespace amct::test
