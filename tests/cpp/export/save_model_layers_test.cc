// save_model on Gemm, MatMul(+Add) and AveragePool layers, and on errors that
// only show up while rewriting (bias overflow): nothing may be written then.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "amct/error.h"
#include "amct/save_passes.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

TEST(SaveModelDeploy, GemmTransBWeightIsTransposedOffline) {
  // W [N=3, K=4] with transB=1, per-tensor scale 0.02.
  ModelBuilder b;
  b.input("x", {-1, 4}).output("y", {-1, 3});
  std::vector<float> w;
  for (int i = 0; i < 12; ++i) w.push_back(static_cast<float>(i * 20 - 110) * 0.02f);
  b.initializer("fc.weight", {3, 4}, w);
  b.initializer("fc.bias", {3}, {0.1f, -0.2f, 0.3f});
  set_int_attribute(b.layer("Gemm", "fc", {"x", "fc.weight", "fc.bias"}, "y"), "transB", 1);
  const Saved saved = run_save(b.model(),
                               record_entry("fc", "    scale_d: 0.0038987214\n    offset_d: 30\n"
                                                  "    scale_w: 0.02\n    offset_w: 0\n"),
                               fresh_dir());
  const auto& m = saved.deploy;
  EXPECT_EQ(node_names(m), (std::vector<std::string>{"fc.quant", "fc", "fc.dequant"}));
  EXPECT_EQ(get_int_attribute(node_named(m, "fc"), "transB", -1), 0);
  const auto& weight = initializer_named(m, "fc.weight");
  EXPECT_EQ(dims_of(weight), (std::vector<int64_t>{4, 3}));
  std::vector<int> expected;
  for (int k = 0; k < 4; ++k)
    for (int n = 0; n < 3; ++n) expected.push_back((n * 4 + k) * 20 - 110);
  EXPECT_EQ(int8_values(weight), expected);
  EXPECT_EQ(find_attribute(node_named(m, "fc.quant"), "scale")->f(), 256.49435f);  // docs/amct-reference.md#deploy-model example
  const float deq = static_cast<float>(0.02f * static_cast<double>(0.0038987214f));
  EXPECT_EQ(initializer_named(m, "fc.bias").int32_data(1), static_cast<int32_t>(std::nearbyint(-0.2f / double{deq})));
  EXPECT_EQ(node_named(m, "fc").output(0), "fc_output0");
  EXPECT_EQ(dims_of(constant_value(saved.fake_quant, "fc.fakedequant.dqscale")), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(dims_of(initializer_named(saved.fake_quant, "fc.weight")), (std::vector<int64_t>{4, 3}));
}

// x [N, 5, 4] -> MatMul fc (W [4, 3]) -> Add(bias, .) or Add(., bias) -> Relu -> y
ModelBuilder matmul_add(bool bias_first) {
  ModelBuilder b;
  b.input("x", {-1, 5, 4}).output("y", {-1, 5, 3});
  std::vector<float> w;
  for (int i = 0; i < 12; ++i) w.push_back(static_cast<float>(i - 6) * 0.05f);
  b.initializer("fc.weight", {4, 3}, w);
  b.initializer("fc.bias", {3}, {0.5f, 0.0f, -0.5f});
  b.layer("MatMul", "fc", {"x", "fc.weight"}, "mm");
  if (bias_first) {
    b.node("Add", "/fc/Add", {"fc.bias", "mm"}, {"sum"});
  } else {
    b.node("Add", "/fc/Add", {"mm", "fc.bias"}, {"sum"});
  }
  b.node("Relu", "relu", {"sum"}, {"y"});
  return b;
}

// AMCT leaves a MatMul's bias Add in float after the dequant, whichever
// input of the Add holds the bias.
TEST(SaveModelDeploy, MatMulBiasAddStaysFloatAfterTheDequant) {
  for (const bool bias_first : {true, false}) {
    SCOPED_TRACE(bias_first);
    const Saved saved = run_save(matmul_add(bias_first).model(),
                                 record_entry("fc", "    scale_d: 0.125\n    offset_d: -3\n"
                                                    "    scale_w: 0.05\n    offset_w: 0\n"),
                                 fresh_dir());
    const auto& m = saved.deploy;
    EXPECT_EQ(node_names(m), (std::vector<std::string>{"fc.quant", "fc", "fc.dequant", "/fc/Add", "relu"}));
    EXPECT_EQ(node_named(m, "fc.dequant").input(0), node_named(m, "fc").output(0));
    const auto& add = node_named(m, "/fc/Add");
    EXPECT_EQ(add.input(bias_first ? 1 : 0), "fc.dequant.output0");
    EXPECT_EQ(node_named(m, "relu").input(0), "sum");
    const auto& bias = initializer_named(m, add.input(bias_first ? 0 : 1));
    EXPECT_EQ(bias.data_type(), onnx::TensorProto::FLOAT);
    EXPECT_EQ(int8_values(initializer_named(m, "fc.weight"))[0], -6);
    EXPECT_EQ(dims_of(constant_value(saved.fake_quant, "fc.fakedequant.dqscale")), (std::vector<int64_t>{1, 1}));
    EXPECT_EQ(node_named(saved.fake_quant, "fc.fakedequant.mul").input(0), node_named(saved.fake_quant, "fc").output(0));
  }
}

TEST(SaveModelDeploy, AveragePoolQuantGoesBeforeItsPad) {
  ModelBuilder b;
  b.input("x", {1, 2, 4, 4}).output("y", {1, 2, 3, 3});
  auto* pads = b.graph().add_initializer();
  pads->set_name("pool_pad.pads");
  pads->set_data_type(onnx::TensorProto::INT64);
  pads->add_dims(8);
  for (int64_t v : {0, 0, 1, 1, 0, 0, 1, 1}) pads->add_int64_data(v);
  b.node("Pad", "pool_pad", {"x", "pool_pad.pads"}, {"padded"});
  auto& pool = b.layer("AveragePool", "pool", {"padded"}, "y");
  onnx::AttributeProto* kernel = pool.add_attribute();
  kernel->set_name("kernel_shape");
  kernel->set_type(onnx::AttributeProto::INTS);
  kernel->add_ints(4);
  kernel->add_ints(4);
  const Saved saved = run_save(b.model(),
                               record_entry("pool", "    scale_d: 0.007061911\n    offset_d: 19\n"
                                                    "    scale_w: 1.0\n    offset_w: 0\n    act_type: \"INT8\"\n"),
                               fresh_dir());
  const auto& m = saved.deploy;
  EXPECT_EQ(node_names(m), (std::vector<std::string>{"pool.quant", "pool_pad", "pool", "pool.dequant"}));
  EXPECT_EQ(node_named(m, "pool.quant").input(0), "x");
  EXPECT_EQ(node_named(m, "pool_pad").input(0), "pool.quant.output0");
  EXPECT_EQ(node_named(m, "pool").input(0), "padded");
  EXPECT_EQ(find_attribute(node_named(m, "pool.quant"), "scale")->f(), 141.60474f);  // docs/amct-reference.md#deploy-model example
  const auto& param = initializer_named(m, "pool.dequant.param");
  EXPECT_EQ(dims_of(param), (std::vector<int64_t>{1}));
  EXPECT_EQ(float_bits_to_value(static_cast<uint32_t>(param.uint64_data(0))), 0.007061911f);
  EXPECT_EQ(dims_of(constant_value(saved.fake_quant, "pool.fakedequant.dqscale")), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(initializer_named(saved.fake_quant, "pool_pad.pads").data_type(), onnx::TensorProto::INT64);
}

TEST(SaveModelFailure, BiasOverflowNamesTheLayerAndWritesNothing) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {});
  b.initializer("a.weight", {1, 1, 1, 1}, {1e-6f});
  b.initializer("a.bias", {1}, {1e6f});
  b.layer("Conv", "a", {"x", "a.weight", "a.bias"}, "y");
  const std::string dir = fresh_dir();
  save_onnx_model(b.model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt",
             record_entry("a", "    scale_d: 1e-6\n    offset_d: 0\n    scale_w: 1e-6\n    offset_w: 0\n"));
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'a'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("INT32"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

TEST(SaveModelPasses, RunInAmctOrderPerStage) {
  std::vector<std::string> common, deploy, fake_quant, qdq;
  for (const SavePass& pass : save_passes()) {
    auto& list = pass.stage == SaveStage::kCommon   ? common
                 : pass.stage == SaveStage::kDeploy ? deploy
                 : pass.stage == SaveStage::kQdq    ? qdq
                                                    : fake_quant;
    list.emplace_back(pass.name);
  }
  EXPECT_EQ(common, (std::vector<std::string>{"GemmTransBOptimize", "ApplyDMQBalancer", "InsertQuant",
                                              "InsertWeightQuant", "InsertDequant", "InsertBiasQuant", "QuantFusion"}));
  EXPECT_EQ(deploy, (std::vector<std::string>{"PackInt4Weight", "ReplaceRNN", "RemoveOpDataType"}));
  EXPECT_EQ(fake_quant, (std::vector<std::string>{"InsertRNNFakeQuant", "ReplaceQuant", "WeightFakequant",
                                                  "ReplaceDequant", "ReplaceAntiQuant", "ReplaceBiasQuant",
                                                  "RemoveOpDataType"}));
  EXPECT_EQ(qdq, (std::vector<std::string>{"ApplyDMQBalancer", "QdqDeconvToConv", "QdqOutput", "QdqInput",
                                           "QdqGlobalPool", "QdqTensor", "QdqWeight", "QdqFoldPad",
                                           "RemoveOpDataType"}));
}

TEST(SaveModelPaths, AmctOutputNames) {
  EXPECT_EQ(output_model_path("out/net", "deploy"), "out/net_deploy_model.onnx");
  EXPECT_EQ(output_model_path("out/net", "fake_quant"), "out/net_fake_quant_model.onnx");
  EXPECT_EQ(output_model_path("out/", "deploy"), "out/deploy_model.onnx");
  EXPECT_EQ(output_model_path("net", "fake_quant"), "net_fake_quant_model.onnx");
  EXPECT_EQ(output_model_path("", "deploy"), "deploy_model.onnx");
  EXPECT_EQ(output_model_path("a/b/" + std::string(241, 'p'), "deploy"), "a/b/" + std::string(241, 'p') + "_deploy_model.onnx");
  EXPECT_THROW(output_model_path("a/" + std::string(242, 'p'), "deploy"), Error);
  EXPECT_EQ(output_model_path("out/net", "qdq"), "out/net_qdq_model.onnx");
  EXPECT_THROW(output_model_path("a/net", "int8"), Error);
}

TEST(SaveModelPaths, NoPrefixAndSelectedOutputs) {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {});
  b.initializer("a.weight", {1, 1, 1, 1}, {0.5f});
  b.layer("Conv", "a", {"x", "a.weight"}, "y");
  const std::string dir = fresh_dir();
  save_onnx_model(b.model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt", record_entry("a", "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.5\n    offset_w: 0\n"));
  EXPECT_EQ(save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/new/dir/", {true, false, false}).written,
            (std::vector<std::string>{dir + "/new/dir/deploy_model.onnx"}));
  EXPECT_FALSE(std::filesystem::exists(dir + "/new/dir/fake_quant_model.onnx"));
  EXPECT_EQ(save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/new/dir/", {false, true, false}).written,
            (std::vector<std::string>{dir + "/new/dir/fake_quant_model.onnx"}));
  EXPECT_EQ(save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/new/dir/", {false, false, true}).written,
            (std::vector<std::string>{dir + "/new/dir/qdq_model.onnx"}));
}

}  // namespace
}  // namespace amct::test
