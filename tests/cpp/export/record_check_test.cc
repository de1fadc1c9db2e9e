// Bad records and inputs for save_model (docs/amct-reference.md#record-validation): each is refused with a
// message naming the file, the layer and the field, and nothing is written.
#include <gtest/gtest.h>

#include <filesystem>

#include "amct/error.h"
#include "amct/record_check.h"
#include "amct/layer_graph.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

// conv1 (Conv, 2 output channels) -> relu -> fc (Gemm) ; pool (AveragePool).
onnx::ModelProto checked_model() {
  ModelBuilder b;
  b.input("x", {1, 2, 2, 2}).output("y", {}).output("p", {});
  b.initializer("conv1.weight", {2, 2, 1, 1}, {0.1f, 0.2f, 0.3f, 0.4f});
  b.initializer("fc.weight", {3, 8}, std::vector<float>(24, 0.1f));
  b.layer("Conv", "conv1", {"x", "conv1.weight"}, "c");
  b.node("Relu", "relu", {"c"}, {"r"});
  b.node("Flatten", "flatten", {"r"}, {"f"});
  set_int_attribute(b.layer("Gemm", "fc", {"f", "fc.weight"}, "y"), "transB", 1);
  b.layer("AveragePool", "pool", {"x"}, "p");
  return b.model();
}

const std::string kConvOk =
    "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.01\n    scale_w: 0.02\n    offset_w: 0\n    offset_w: 0\n";

struct BadRecord {
  const char* name;
  std::string text;
  std::vector<std::string> expected;  // substrings of the message besides the record path
};

class RecordCheckBad : public ::testing::TestWithParam<BadRecord> {};

TEST_P(RecordCheckBad, IsRefusedAndNothingIsWritten) {
  const BadRecord& bad = GetParam();
  const std::string dir = fresh_dir();
  save_onnx_model(checked_model(), dir + "/modified.onnx");
  const std::string record = write_text(dir + "/record.txt", bad.text);
  try {
    save_model(dir + "/modified.onnx", record, dir + "/out/net");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(record), std::string::npos) << message;
    for (const auto& part : bad.expected) EXPECT_NE(message.find(part), std::string::npos) << part << " in " << message;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

const std::string kGemmOk = "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.5\n    offset_w: 0\n";

INSTANTIATE_TEST_SUITE_P(
    Records, RecordCheckBad,
    ::testing::Values(
        BadRecord{"Truncated", "record {\n  key: \"conv1\"\n  value {\n    scale_d: 0.1\n", {"line"}},
        BadRecord{"Empty", "", {"no layers"}},
        BadRecord{"UnknownLayer", record_entry("conv9", kConvOk), {"'conv9'", "modified.onnx", "not a node"}},
        BadRecord{"NotQuantizable", record_entry("relu", kConvOk), {"'relu'", "cannot be quantized", "Relu"}},
        BadRecord{"NanScaleD", record_entry("conv1", "    scale_d: nan\n    offset_d: 3\n    scale_w: 0.01\n    offset_w: 0\n"),
                  {"'conv1'", "scale_d", "finite"}},
        BadRecord{"NegativeScaleW", record_entry("conv1", "    scale_d: 0.1\n    offset_d: 3\n    scale_w: -0.01\n    offset_w: 0\n"),
                  {"'conv1'", "scale_w", "greater than 0"}},
        BadRecord{"ZeroScaleD", record_entry("fc", "    scale_d: 0\n    offset_d: 0\n    scale_w: 0.5\n    offset_w: 0\n"),
                  {"'fc'", "scale_d"}},
        BadRecord{"TinyScaleD", record_entry("fc", "    scale_d: 1e-45\n    offset_d: 0\n    scale_w: 0.5\n    offset_w: 0\n"),
                  {"'fc'", "scale_d", "normal float32"}},
        BadRecord{"SubnormalScaleW", record_entry("fc", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 1e-45\n    offset_w: 0\n"),
                  {"'fc'", "scale_w", "normal float32"}},
        BadRecord{"OffsetOutOfRange", record_entry("conv1", "    scale_d: 0.1\n    offset_d: 128\n    scale_w: 0.01\n    offset_w: 0\n"),
                  {"'conv1'", "offset_d", "[-128, 127]"}},
        BadRecord{"Int16OffsetOutOfRange",
                  record_entry("conv1", "    scale_d: 0.1\n    offset_d: 40000\n    scale_w: 0.01\n    offset_w: 0\n"
                                        "    act_type: \"INT16\"\n"),
                  {"'conv1'", "offset_d", "[-32768, 32767]"}},
        BadRecord{"ConvScaleWLength",
                  record_entry("conv1", "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.01\n    scale_w: 0.01\n"
                                        "    scale_w: 0.01\n    offset_w: 0\n    offset_w: 0\n    offset_w: 0\n"),
                  {"'conv1'", "scale_w has 3 values", "2 (one per output channel)"}},
        BadRecord{"GemmScaleWLength",
                  record_entry("fc", "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.01\n    scale_w: 0.01\n"
                                     "    offset_w: 0\n    offset_w: 0\n"),
                  {"'fc'", "scale_w has 2 values; expected 1 (per tensor) or 3 (one per output channel)"}},
        BadRecord{"OffsetWLength", record_entry("conv1", "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.01\n"),
                  {"'conv1'", "offset_w"}},
        BadRecord{"OffsetWNonZero", record_entry("fc", "    scale_d: 0.1\n    offset_d: 3\n    scale_w: 0.01\n    offset_w: 2\n"),
                  {"'fc'", "offset_w", "expected 0"}},
        BadRecord{"MissingScaleD", record_entry("conv1", "    scale_w: 0.01\n    offset_w: 0\n    wts_type: \"INT8\"\n"),
                  {"'conv1'", "scale_d", "calibration has not finished"}},
        BadRecord{"MissingOffsetD", record_entry("conv1", "    scale_d: 0.1\n    scale_w: 0.01\n    offset_w: 0\n"),
                  {"'conv1'", "offset_d", "calibration has not finished"}},
        BadRecord{"ShiftBit", record_entry("conv1", kConvOk + "    shift_bit: 1\n    shift_bit: 1\n"), {"'conv1'", "shift_bit"}},
        BadRecord{"BalanceFactorLength", record_entry("conv1", kConvOk + "    tensor_balance_factor: 1.5\n"),
                  {"'conv1'", "tensor_balance_factor has 1 values; expected 2 (one per input channel of the layer)"}},
        BadRecord{"BalanceFactorTooSmall",
                  record_entry("conv1", kConvOk + "    tensor_balance_factor: 1.5\n    tensor_balance_factor: 1e-8\n"),
                  {"'conv1'", "tensor_balance_factor[1] is 9.99999994e-09",
                   "[FLT_EPSILON, 1/FLT_EPSILON] = [1.1920929e-07, 8388608]"}},
        BadRecord{"BalanceFactorOnPool",
                  record_entry("pool", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 1.0\n    offset_w: 0\n"
                                       "    tensor_balance_factor: 1.0\n    tensor_balance_factor: 1.0\n"),
                  {"'pool'", "tensor_balance_factor is not allowed on AveragePool layers"}},
        BadRecord{"BadWtsType", record_entry("conv1", kConvOk + "    wts_type: \"INT5\"\n"),
                  {"'conv1'", "wts_type is \"INT5\"; expected one of \"INT4\", \"INT6\", \"INT7\", \"INT8\""}},
        BadRecord{"BadActType", record_entry("conv1", kConvOk + "    act_type: \"INT9\"\n"), {"'conv1'", "act_type", "\"INT9\""}},
        BadRecord{"BadPrecisionMode", record_entry("conv1", kConvOk + "    fakequant_precision_mode: \"FAST\"\n"),
                  {"'conv1'", "fakequant_precision_mode"}},
        BadRecord{"DuplicateLayer", record_entry("fc", kGemmOk) + record_entry("fc", kGemmOk), {"'fc'", "more than one"}},
        BadRecord{"MissingKey", "record {\n  value {\n" + kGemmOk + "  }\n}\n", {"key"}},
        BadRecord{"LaterBadEntry",
                  record_entry("fc", kGemmOk) +
                      record_entry("pool", "    scale_d: -1\n    offset_d: 0\n    scale_w: 1.0\n    offset_w: 0\n"),
                  {"'pool'", "scale_d"}}),
    [](const ::testing::TestParamInfo<BadRecord>& info) { return std::string(info.param.name); });

TEST(RecordCheck, MissingFilesAreNotFound) {
  const std::string dir = fresh_dir();
  save_onnx_model(checked_model(), dir + "/modified.onnx");
  try {
    save_model(dir + "/modified.onnx", dir + "/absent.txt", dir + "/out/net");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("absent.txt"), std::string::npos) << e.what();
  }
  try {
    save_model(dir + "/absent.onnx", dir + "/modified.onnx", dir + "/out/net");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("absent.onnx"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

TEST(RecordCheck, ParsesFactorsBitsAndDataType) {
  onnx::ModelProto model = checked_model();
  set_string_attribute(*find_node(*model.mutable_graph(), "conv1"), "op_data_type", "float16");
  const std::string text =
      record_entry("conv1", kConvOk + "    act_type: \"INT16\"\n    wts_type: \"INT7\"\n") +
      record_entry("pool", "    scale_d: 0.5\n    offset_d: -4\n    scale_w: 1.0\n    offset_w: 0\n");
  const auto record = parse_record_text(text, "r.txt");
  const QuantPlan plan = check_record(record, model.graph(), "r.txt", "m.onnx");
  ASSERT_EQ(plan.layers.size(), 2u);
  const QuantLayer& conv = plan.layers[0];
  EXPECT_EQ(conv.name, "conv1");
  EXPECT_EQ(conv.op_type, "Conv");
  EXPECT_EQ(conv.data_scale, 0.1f);
  EXPECT_EQ(conv.data_offset, 3);
  EXPECT_EQ(conv.act_format.bits(), 16);
  EXPECT_EQ(conv.weight_format.bits(), 7);
  EXPECT_EQ(conv.weight_scale, (std::vector<float>{0.01f, 0.02f}));
  EXPECT_TRUE(conv.float16);
  EXPECT_EQ(conv.weight_dims, (std::vector<int64_t>{2, 2, 1, 1}));
  const QuantLayer* pool = plan.find("pool");
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->act_format.bits(), 8);
  EXPECT_FALSE(pool->float16);
  EXPECT_TRUE(pool->weight_dims.empty());
  EXPECT_EQ(plan.find("fc"), nullptr);
}

TEST(RecordCheck, Int4Int6Int7WeightsAreAccepted) {
  for (const auto& [type, bits] : {std::pair{"INT4", 4}, std::pair{"INT6", 6}, std::pair{"INT7", 7}}) {
    const auto record =
        parse_record_text(record_entry("conv1", kConvOk + "    wts_type: \"" + type + "\"\n"), "r.txt");
    const QuantPlan plan = check_record(record, checked_model().graph(), "r.txt", "m.onnx");
    EXPECT_EQ(plan.layers.at(0).weight_format.bits(), bits);
    EXPECT_EQ(plan.layers.at(0).act_format.bits(), 8);
  }
}

TEST(RecordCheck, DstTypeOverridesBothBitWidths) {
  const auto record = parse_record_text(
      record_entry("pool", "    scale_d: 0.5\n    offset_d: 0\n    scale_w: 1.0\n    offset_w: 0\n    dst_type: \"INT4\"\n"
                           "    act_type: \"INT8\"\n"),
      "r.txt");
  const QuantPlan plan = check_record(record, checked_model().graph(), "r.txt", "m.onnx");
  EXPECT_EQ(plan.layers.at(0).act_format.bits(), 4);
}

TEST(RecordCheck, NodeBasedLimits) {
  ModelBuilder b;
  b.input("x", {2, 4}).input("w", {4, 3});
  b.initializer("g.weight", {4, 3}, std::vector<float>(12, 0.1f));
  b.initializer("k.weight", {2, 2}, std::vector<float>(4, 0.1f));
  auto& gemm = b.layer("Gemm", "g", {"x", "g.weight"}, "g_out");
  set_int_attribute(gemm, "transA", 1);
  b.layer("MatMul", "m", {"x", "w"}, "m_out");
  b.layer("Conv", "k", {"x", "k.weight"}, "k_out");
  b.layer("GlobalAveragePool", "gap", {"x"}, "gap_out");
  b.layer("LSTM", "rnn", {"x"}, "rnn_out");
  const auto& g = b.graph();
  EXPECT_NE(unquantizable_reason(g, *find_node(g, "g")).find("transA"), std::string::npos);
  EXPECT_NE(unquantizable_reason(g, *find_node(g, "m")).find("is not a constant"), std::string::npos);
  EXPECT_NE(unquantizable_reason(g, *find_node(g, "k")).find("rank 2; expected 3 to 5"), std::string::npos);
  EXPECT_NE(unquantizable_reason(g, *find_node(g, "gap")).find("GlobalAveragePool"), std::string::npos);
  EXPECT_EQ(unquantizable_reason(g, *find_node(g, "rnn")), "its W (input 1) is not a constant");
}

}  // namespace
}  // namespace amct::test
