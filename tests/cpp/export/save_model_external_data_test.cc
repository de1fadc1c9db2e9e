// save_model with ONNX external data: a modified model whose weights are in
// a data file, and outputs whose initializers go to data files (AMCT's
// per-tensor files for deploy and fake-quant, "<file>.data" for QDQ), all
// committed with their .onnx files.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/onnx_external_data.h"
#include "amct/onnx_graph.h"
#include "amct/save_model.h"
#include "save_test_support.h"

namespace amct::test {
namespace {
namespace fs = std::filesystem;

// The initializers of `path` (as written, not resolved) that are external, by name.
std::vector<std::string> external_initializers(const std::string& path) {
  const onnx::ModelProto shell = parse_onnx_model(read_file(path, "test model"), path);
  std::vector<std::string> names;
  for (const auto& t : shell.graph().initializer())
    if (t.data_location() == onnx::TensorProto::EXTERNAL) names.push_back(t.name());
  return names;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(SaveModelExternalData, ExternalInputGivesExternalOutputsEqualToTheInMemoryOnes) {
  const std::string reference_dir = fresh_dir();
  const Saved reference = run_save(conv_model(), conv_record("0.01"), reference_dir);

  const std::string dir = fresh_dir();
  ExternalDataRule all;
  all.limit = 1;
  FileSet staged;
  stage_onnx_model(staged, conv_model(), dir + "/modified.onnx", all);
  staged.commit();
  write_text(dir + "/record.txt", conv_record("0.01"));
  const auto written = save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net").written;
  ASSERT_EQ(written.size(), 3u);

  // AMCT writes the initializers that were external again as external: the
  // INT8 deploy weight (its INT32 bias lies in int32_data and stays) and both
  // fake-quant tensors in per-tensor files, the QDQ weight in one file.
  EXPECT_EQ(files_in(dir + "/out"),
            (std::vector<std::string>{"conv1.bias_fakequant.external", "conv1.weight_deploy.external",
                                      "conv1.weight_fakequant.external", "net_deploy_model.onnx",
                                      "net_fake_quant_model.onnx", "net_qdq_model.onnx", "net_qdq_model.onnx.data"}));
  EXPECT_EQ(external_initializers(written[0]), std::vector<std::string>{"conv1.weight"});
  EXPECT_EQ(external_initializers(written[1]), (std::vector<std::string>{"conv1.weight", "conv1.bias"}));
  EXPECT_FALSE(external_initializers(written[2]).empty());
  EXPECT_EQ(load_onnx_model(written[0]).SerializeAsString(), reference.deploy.SerializeAsString());
  EXPECT_EQ(load_onnx_model(written[1]).SerializeAsString(), reference.fake_quant.SerializeAsString());
  EXPECT_EQ(load_onnx_model(written[2]).SerializeAsString(), reference.qdq.SerializeAsString());
}

TEST(SaveModelExternalData, TheLimitOptionMovesInitializersOutOfEveryOutput) {
  const std::string dir = fresh_dir();
  save_onnx_model(conv_model(), dir + "/modified.onnx");
  write_text(dir + "/record.txt", conv_record("0.01"));
  SaveOptions options;
  options.external_data_limit = 1;
  const auto written = save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/", options).written;
  ASSERT_EQ(written.size(), 3u);
  for (const auto& path : written) EXPECT_FALSE(external_initializers(path).empty()) << path;
  EXPECT_TRUE(fs::exists(dir + "/out/conv1.weight_deploy.external"));
  EXPECT_TRUE(fs::exists(dir + "/out/conv1.weight_fakequant.external"));
  EXPECT_TRUE(fs::exists(dir + "/out/qdq_model.onnx.data"));
  options.external_data_limit = 0;
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/", options);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "save_model: external_data_limit must be at least 1 byte");
  }
}

TEST(SaveModelExternalData, ABadReferenceInTheModifiedModelWritesNothing) {
  const std::string dir = fresh_dir();
  ExternalDataRule all;
  all.limit = 1;
  FileSet staged;
  stage_onnx_model(staged, conv_model(), dir + "/modified.onnx", all);
  staged.commit();
  fs::resize_file(dir + "/modified.onnx.data", 20);  // the bias at offset 4096 is gone
  write_text(dir + "/record.txt", conv_record("0.01"));
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "initializer 'conv1.bias' of ONNX model '" + dir +
                                         "/modified.onnx': external data offset 4096 is beyond the end of '" + dir +
                                         "/modified.onnx.data' (20 bytes)");
  }
  EXPECT_FALSE(fs::exists(dir + "/out"));
}

}  // namespace
}  // namespace amct::test
