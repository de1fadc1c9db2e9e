// INT4 weights: AMCT's two-per-byte packing along the input-channel axis in
// the deploy model (checked byte by byte on known weights), the fake-quant
// and QDQ models holding the same integers unpacked, the odd-Cin error, and
// INT6/INT7 weights clamped to their ranges.
#include <gtest/gtest.h>

#include <filesystem>

#include "amct/error.h"
#include "amct/int4_packing.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

// ---- pack_int4 on its own ----

TEST(Int4Packing, AxisIsTheInputChannelAxisOfEachLayout) {
  EXPECT_EQ(int4_pack_axis(WeightLayout::kOutFirst, false), 1);
  EXPECT_EQ(int4_pack_axis(WeightLayout::kDeconv, false), 0);
  EXPECT_EQ(int4_pack_axis(WeightLayout::kInOut, false), 0);
  EXPECT_EQ(int4_pack_axis(WeightLayout::kGemm, false), 0);
  EXPECT_EQ(int4_pack_axis(WeightLayout::kGemm, true), 1);
  EXPECT_EQ(int4_pack_axis(WeightLayout::kGates, false), 2);
  EXPECT_EQ(int4_pack_axis(WeightLayout::kNone, false), -1);
}

TEST(Int4Packing, PairsAlongTheAxisWithTheEvenIndexInTheLowNibble) {
  // [2, 4, 1, 2] on axis 1: byte (o, j, 0, w) = v(o, 2j, 0, w) | v(o, 2j+1, 0, w) << 4.
  const std::vector<int32_t> values = {-8, 7,  3, -1, 0, 1, 2, -2,   // o = 0: rows c = 0..3, w = 0..1
                                       5,  -5, 6, 4,  -3, 3, -7, 0};  // o = 1
  const PackedInt4 packed = pack_int4(values, std::vector<int64_t>{2, 4, 1, 2}, 1);
  EXPECT_EQ(packed.dims, (std::vector<int64_t>{2, 2, 1, 2}));
  // (c0, c1) at w0: (-8, 3) -> 0x8 | 0x3 << 4; at w1: (7, -1) -> 0x7 | 0xF << 4; ...
  const std::string expected = {'\x38', '\xF7', '\x20', '\xE1', '\x65', '\x4B', '\x9D', '\x03'};
  EXPECT_EQ(packed.bytes, expected);
}

TEST(Int4Packing, RefusesAnOddAxisAndValuesOutsideInt4) {
  EXPECT_THROW(pack_int4(std::vector<int32_t>(6, 0), std::vector<int64_t>{2, 3}, 1), Error);
  EXPECT_THROW(pack_int4(std::vector<int32_t>{0, 8}, std::vector<int64_t>{1, 2}, 1), Error);
  EXPECT_THROW(pack_int4(std::vector<int32_t>{0, -9}, std::vector<int64_t>{1, 2}, 1), Error);
}

// ---- save_model ----

// Integers of a [2, 4] weight (rows: output channels of the Conv).
const std::vector<int> kInts = {-8, 7, 3, -1, 0, -5, 6, 2};
constexpr float kS0 = 0.01f;
constexpr float kS1 = 0.02f;

// An INT4 record entry the way AMCT's text_format writes it: fields in
// field-number order, floats as the shortest float32 text.
std::string int4_record(const std::string& layer, int scales) {
  std::string body = "    scale_d: 0.05\n    offset_d: 3\n    scale_w: 0.01\n";
  if (scales == 2) body += "    scale_w: 0.02\n";
  body += "    offset_w: 0\n";
  if (scales == 2) body += "    offset_w: 0\n";
  return record_entry(layer, body + "    act_type: \"INT8\"\n    wts_type: \"INT4\"\n");
}

// x[N,4,1,1] -> Conv conv1 (W [2,4,1,1] = kInts * scale_w[row], bias [2]) -> y.
onnx::ModelProto int4_conv() {
  ModelBuilder b;
  b.input("x", {-1, 4, 1, 1}).output("y", {-1, 2, 1, 1});
  std::vector<float> w;
  for (size_t i = 0; i < kInts.size(); ++i) w.push_back(static_cast<float>(kInts[i]) * (i < 4 ? kS0 : kS1));
  // One weight off the grid and out of range: 7.6 steps rounds to 8, clamped to 7.
  w[1] = 7.6f * kS0;
  b.initializer("conv1.weight", {2, 4, 1, 1}, w);
  b.initializer("conv1.bias", {2}, {0.5f, -0.25f});
  b.layer("Conv", "conv1", {"x", "conv1.weight", "conv1.bias"}, "y");
  return b.model();
}

TEST(SaveModelInt4, ConvDeployPacksTwoWeightsPerByteAlongCin) {
  const Saved saved = run_save(int4_conv(), int4_record("conv1", 2), fresh_dir());
  EXPECT_EQ(node_names(saved.deploy), (std::vector<std::string>{"conv1.quant", "conv1", "conv1.dequant"}));
  EXPECT_EQ(op_types(saved.deploy), (std::vector<std::string>{"AscendQuant", "Conv", "AscendDequant"}));
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "conv1.quant"), "dst_type")->s(), "INT8");
  const auto& conv = node_named(saved.deploy, "conv1");
  EXPECT_EQ(conv.input(1), "conv1.weight");
  const auto& weight = initializer_named(saved.deploy, "conv1.weight");
  EXPECT_EQ(weight.data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(dims_of(weight), (std::vector<int64_t>{2, 2, 1, 1}));
  // Row 0 (-8, 7 | 3, -1), row 1 (0, -5 | 6, 2).
  const std::string expected = {'\x78', '\xF3', '\xB0', '\x26'};
  EXPECT_EQ(weight.raw_data(), expected);
  EXPECT_EQ(initializer_named(saved.deploy, "conv1.bias").data_type(), onnx::TensorProto::INT32);
  EXPECT_EQ(initializer_named(saved.deploy, "conv1.dequant.param").uint64_data_size(), 2);
}

TEST(SaveModelInt4, FakeQuantAndQdqHoldTheSameIntegersUnpacked) {
  const Saved saved = run_save(int4_conv(), int4_record("conv1", 2), fresh_dir());
  const auto& fake = initializer_named(saved.fake_quant, "conv1.weight");
  EXPECT_EQ(fake.data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(dims_of(fake), (std::vector<int64_t>{2, 4, 1, 1}));
  std::vector<float> expected(kInts.begin(), kInts.end());
  EXPECT_EQ(tensor_to_floats(fake), expected);
  // The QDQ model stores INT4 integers in 8-bit tensors (ONNX Runtime's
  // fused integer kernels take 8-bit weights; benchmarks/int4_qdq_latency.py).
  // A conv writing a graph output is a ConvInteger there: UINT8, value + 128.
  EXPECT_EQ(node_named(saved.qdq, "conv1").op_type(), "ConvInteger");
  const auto& qdq = initializer_named(saved.qdq, "conv1.weight");
  EXPECT_EQ(qdq.data_type(), onnx::TensorProto::UINT8);
  EXPECT_EQ(dims_of(qdq), (std::vector<int64_t>{2, 4, 1, 1}));
  std::vector<int> shifted;
  for (char c : qdq.raw_data()) shifted.push_back(static_cast<uint8_t>(c) - 128);
  EXPECT_EQ(shifted, kInts);
}

TEST(SaveModelInt4, DstTypeInt4MakesBothActivationsAndWeightsInt4) {
  // dst_type overrides act_type and wts_type (docs/amct-reference.md#record-validation).
  const std::string record = record_entry("conv1",
                                          "    scale_d: 0.05\n    offset_d: 3\n    scale_w: 0.01\n    scale_w: 0.02\n"
                                          "    offset_w: 0\n    offset_w: 0\n    dst_type: \"INT4\"\n");
  const Saved saved = run_save(int4_conv(), record, fresh_dir());
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "conv1.quant"), "dst_type")->s(), "INT4");
  EXPECT_EQ(node_named(saved.deploy, "conv1").input(2), "conv1.bias_quant.output0");
  EXPECT_EQ(initializer_named(saved.deploy, "conv1.weight").raw_data(), (std::string{'\x78', '\xF3', '\xB0', '\x26'}));
  EXPECT_EQ(tensor_to_floats(constant_value(saved.fake_quant, "conv1.quant.fakequant.min_val"))[0], -8.0f);
}

TEST(SaveModelInt4, GemmWithTransBPacksAlongCinAfterTheTranspose) {
  // Gemm g: W [Cout 2, Cin 4] with transB=1; GemmTransB makes it [4, 2] and
  // the pairs run along axis 0 of that.
  ModelBuilder b;
  b.input("x", {-1, 4}).output("y", {-1, 2});
  std::vector<float> w;
  for (int v : kInts) w.push_back(static_cast<float>(v) * kS0);
  b.initializer("g.weight", {2, 4}, w);
  set_int_attribute(b.layer("Gemm", "g", {"x", "g.weight"}, "y"), "transB", 1);
  const Saved saved = run_save(b.model(), int4_record("g", 1), fresh_dir());
  EXPECT_EQ(get_int_attribute(node_named(saved.deploy, "g"), "transB", -1), 0);
  const auto& weight = initializer_named(saved.deploy, "g.weight");
  EXPECT_EQ(dims_of(weight), (std::vector<int64_t>{2, 2}));
  // W^T rows k: (-8, 0), (7, -5), (3, 6), (-1, 2); bytes [j, n] = W^T[2j, n] | W^T[2j+1, n] << 4.
  const std::string expected = {'\x78', '\xB0', '\xF3', '\x26'};
  EXPECT_EQ(weight.raw_data(), expected);
  EXPECT_EQ(dims_of(initializer_named(saved.fake_quant, "g.weight")), (std::vector<int64_t>{4, 2}));
  // The QDQ Gemm reads INT8 integers (transB kept) through DequantizeLinear.
  EXPECT_EQ(int8_values(initializer_named(saved.qdq, "g.weight")), kInts);
  EXPECT_EQ(node_named(saved.qdq, "g").input(1), "g.weight_dequant.output0");
  EXPECT_EQ(node_named(saved.qdq, "g.weight_dequant").op_type(), "DequantizeLinear");
}

TEST(SaveModelInt4, MatMulAndConvTransposePackAlongAxisZero) {
  ModelBuilder b;
  b.input("x", {-1, 4, 1, 1}).output("y", {});
  std::vector<float> w;
  for (int v : kInts) w.push_back(static_cast<float>(v) * kS0);
  b.initializer("d.weight", {4, 2, 1, 1}, w);  // [Cin 4, Cout 2, 1, 1]
  b.layer("ConvTranspose", "d", {"x", "d.weight"}, "d_out");
  b.node("Flatten", "flat", {"d_out"}, {"f"});
  b.initializer("m.weight", {2, 4}, w);  // [K 2, N 4]
  b.layer("MatMul", "m", {"f", "m.weight"}, "y");
  const Saved saved = run_save(b.model(), int4_record("d", 1) + int4_record("m", 1), fresh_dir());
  // ConvTranspose [4, 2, 1, 1]: pairs (rows 0, 1) and (rows 2, 3) per column.
  // Rows: (-8, 7), (3, -1), (0, -5), (6, 2).
  const auto& deconv = initializer_named(saved.deploy, "d.weight");
  EXPECT_EQ(dims_of(deconv), (std::vector<int64_t>{2, 2, 1, 1}));
  EXPECT_EQ(deconv.raw_data(), (std::string{'\x38', '\xF7', '\x60', '\x2B'}));
  // MatMul [2, 4]: one pair of rows (-8, 7, 3, -1) and (0, -5, 6, 2).
  const auto& matmul = initializer_named(saved.deploy, "m.weight");
  EXPECT_EQ(dims_of(matmul), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(matmul.raw_data(), (std::string{'\x08', '\xB7', '\x63', '\x2F'}));
}

TEST(SaveModelInt4, OddInputChannelsAreRefusedNamingTheLayer) {
  ModelBuilder b;
  b.input("x", {-1, 3, 1, 1}).output("y", {});
  b.initializer("conv1.weight", {2, 3, 1, 1}, std::vector<float>(6, 0.01f));
  b.layer("Conv", "conv1", {"x", "conv1.weight"}, "y");
  const std::string dir = fresh_dir();
  save_onnx_model(b.model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt", int4_record("conv1", 1));
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kRuntime);
    EXPECT_EQ(std::string(e.what()),
              "record file '" + dir + "/record.txt', layer 'conv1': INT4 weights are packed two per byte along the input-channel axis (axis 1 of the Conv "
              "weight, dims [2, 3, 1, 1]), whose size 3 is odd; quantize this layer with 8 bits");
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

// ---- INT6 / INT7 ----

TEST(SaveModelInt6Int7, WeightsClampToTheirRangeInEveryModel) {
  for (const auto& [type, lo, hi] : {std::tuple{"INT6", -32, 31}, std::tuple{"INT7", -64, 63}}) {
    SCOPED_TRACE(type);
    ModelBuilder b;
    b.input("x", {-1, 3, 1, 1}).output("y", {});
    // 200 and -200 steps lie far outside both ranges; 5 and -3 inside.
    b.initializer("conv1.weight", {1, 3, 1, 1}, {200 * kS0, -200 * kS0, 5 * kS0});
    b.layer("Conv", "conv1", {"x", "conv1.weight"}, "y");
    const std::string record = record_entry("conv1", std::string("    scale_d: 0.05\n    offset_d: 3\n    scale_w: 0.01\n"
                                                                 "    offset_w: 0\n    act_type: \"INT8\"\n"
                                                                 "    wts_type: \"") +
                                                         type + "\"\n");
    const Saved saved = run_save(b.model(), record, fresh_dir());
    const auto& deploy = initializer_named(saved.deploy, "conv1.weight");
    EXPECT_EQ(deploy.data_type(), onnx::TensorProto::INT8);
    EXPECT_EQ(dims_of(deploy), (std::vector<int64_t>{1, 3, 1, 1}));  // never packed
    EXPECT_EQ(int8_values(deploy), (std::vector<int>{hi, lo, 5}));
    EXPECT_EQ(tensor_to_floats(initializer_named(saved.fake_quant, "conv1.weight")),
              (std::vector<float>{static_cast<float>(hi), static_cast<float>(lo), 5.0f}));
    std::vector<int> qdq;  // a ConvInteger's UINT8 weight, value + 128
    for (char c : initializer_named(saved.qdq, "conv1.weight").raw_data()) qdq.push_back(static_cast<uint8_t>(c) - 128);
    EXPECT_EQ(qdq, (std::vector<int>{hi, lo, 5}));
  }
}

}  // namespace
}  // namespace amct::test
