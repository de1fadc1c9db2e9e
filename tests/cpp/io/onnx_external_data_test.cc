// ONNX external data: reading tensors from data files beside the model
// (with the checks that keep a reference inside the model's directory and
// inside its file), and writing models whose initializers are moved out.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../export/save_test_support.h"
#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/onnx_external_data.h"
#include "amct/onnx_graph.h"

namespace amct::test {
namespace {
namespace fs = std::filesystem;

std::string file_bytes(const std::string& path) { return read_file(path, "test file"); }

// Stages and commits `model` at `path` under `rule`; returns the data files.
std::vector<std::string> write_model(const onnx::ModelProto& model, const std::string& path,
                                     const ExternalDataRule& rule) {
  FileSet files;
  std::vector<std::string> data = stage_onnx_model(files, model, path, rule);
  files.commit();
  return data;
}

ExternalDataRule limit(size_t bytes, const std::string& suffix = "") {
  ExternalDataRule rule;
  rule.limit = bytes;
  rule.per_tensor_suffix = suffix;
  return rule;
}

std::string entry(const onnx::TensorProto& t, const std::string& key) {
  for (const auto& e : t.external_data())
    if (e.key() == key) return e.value();
  return "<none>";
}

TEST(ExternalData, OneFileHoldsEveryMovedTensorAtAlignedOffsetsAndReadsBack) {
  const std::string dir = fresh_dir();
  const onnx::ModelProto model = conv_model();
  const auto data = write_model(model, dir + "/m.onnx", limit(1));
  EXPECT_EQ(data, std::vector<std::string>{dir + "/m.onnx.data"});

  // Largest first: the 16-byte weight at 0, the 8-byte bias at the next page.
  const onnx::ModelProto shell = parse_onnx_model(file_bytes(dir + "/m.onnx"), "m.onnx");
  const auto& weight = initializer_named(shell, "conv1.weight");
  const auto& bias = initializer_named(shell, "conv1.bias");
  EXPECT_EQ(weight.data_location(), onnx::TensorProto::EXTERNAL);
  EXPECT_FALSE(weight.has_raw_data());
  EXPECT_EQ(entry(weight, "location"), "m.onnx.data");
  EXPECT_EQ(entry(weight, "offset"), "0");
  EXPECT_EQ(entry(weight, "length"), "16");
  EXPECT_EQ(entry(bias, "offset"), "4096");
  EXPECT_EQ(entry(bias, "length"), "8");
  const std::string bytes = file_bytes(dir + "/m.onnx.data");
  ASSERT_EQ(bytes.size(), 4096u + 8u);
  EXPECT_EQ(bytes.substr(0, 16), initializer_named(model, "conv1.weight").raw_data());
  EXPECT_EQ(bytes.substr(16, 4080), std::string(4080, '\0'));
  EXPECT_EQ(bytes.substr(4096), initializer_named(model, "conv1.bias").raw_data());

  std::set<std::string> was_external;
  const onnx::ModelProto loaded = load_onnx_model(dir + "/m.onnx", &was_external);
  EXPECT_EQ(was_external, (std::set<std::string>{"conv1.bias", "conv1.weight"}));
  EXPECT_EQ(loaded.SerializeAsString(), model.SerializeAsString());
}

TEST(ExternalData, StagingThatKeepsTheDataWritesTheSameFilesAndLeavesTheModelAsItWas) {
  const onnx::ModelProto model = conv_model();
  for (const ExternalDataRule& rule : {limit(1), limit(1, "_deploy.external"), limit(size_t{1} << 30)}) {
    const std::string plain = fresh_dir(), keeping = fresh_dir();
    const auto plain_data = write_model(model, plain + "/m.onnx", rule);
    onnx::ModelProto kept = model;
    FileSet files;
    const auto kept_data = stage_onnx_model_keeping_data(files, kept, keeping + "/m.onnx", rule);
    files.commit();
    EXPECT_EQ(kept.SerializeAsString(), model.SerializeAsString()) << rule.per_tensor_suffix;
    ASSERT_EQ(kept_data.size(), plain_data.size());
    EXPECT_EQ(file_bytes(keeping + "/m.onnx"), file_bytes(plain + "/m.onnx"));
    for (size_t i = 0; i < kept_data.size(); ++i) {
      EXPECT_EQ(fs::path(kept_data[i]).filename(), fs::path(plain_data[i]).filename());
      EXPECT_EQ(file_bytes(kept_data[i]), file_bytes(plain_data[i]));
    }
  }
}

TEST(ExternalData, PerTensorFilesAreNamedAfterTheTensor) {
  const std::string dir = fresh_dir();
  ModelBuilder b;
  b.input("x", {1, 2}).output("y", {1, 2});
  b.initializer("blocks/0:w", {2, 2}, {1, 2, 3, 4});
  b.node("MatMul", "mm", {"x", "blocks/0:w"}, {"y"});
  const auto data = write_model(b.model(), dir + "/m.onnx", limit(1, "_deploy.external"));
  EXPECT_EQ(data, std::vector<std::string>{dir + "/blocks_0_w_deploy.external"});
  EXPECT_EQ(file_bytes(dir + "/blocks_0_w_deploy.external"), initializer_named(b.model(), "blocks/0:w").raw_data());
  EXPECT_EQ(load_onnx_model(dir + "/m.onnx").SerializeAsString(), b.model().SerializeAsString());
  EXPECT_EQ(external_file_name("..", ".x"), "_...x");
}

ModelBuilder big_and_small() {
  ModelBuilder b;
  b.input("x", {1, 1000}).output("y", {1, 1});
  b.initializer("big", {1000, 1}, std::vector<float>(1000, 0.5f));
  b.initializer("small", {1}, {2.0f});
  b.node("MatMul", "mm", {"x", "big"}, {"t"});
  b.node("Add", "add", {"t", "small"}, {"y"});
  return b;
}

TEST(ExternalData, OnlyTheLargestInitializersMoveUntilTheModelFits) {
  const std::string dir = fresh_dir();
  const onnx::ModelProto model = big_and_small().model();
  const size_t size = model.ByteSizeLong();
  EXPECT_TRUE(write_model(model, dir + "/fits.onnx", limit(size + 1)).empty());
  EXPECT_FALSE(fs::exists(dir + "/fits.onnx.data"));
  EXPECT_EQ(file_bytes(dir + "/fits.onnx"), model.SerializeAsString());

  write_model(model, dir + "/m.onnx", limit(size - 100));
  const onnx::ModelProto shell = parse_onnx_model(file_bytes(dir + "/m.onnx"), "m.onnx");
  EXPECT_EQ(initializer_named(shell, "big").data_location(), onnx::TensorProto::EXTERNAL);
  EXPECT_EQ(initializer_named(shell, "small").data_location(), onnx::TensorProto::DEFAULT);
  EXPECT_EQ(fs::file_size(dir + "/m.onnx.data"), 4000u);
}

TEST(ExternalData, InitializersThatWereExternalMoveWhateverTheSize) {
  const std::string dir = fresh_dir();
  ExternalDataRule rule;
  rule.always = {"small"};
  write_model(big_and_small().model(), dir + "/m.onnx", rule);
  const onnx::ModelProto shell = parse_onnx_model(file_bytes(dir + "/m.onnx"), "m.onnx");
  EXPECT_EQ(initializer_named(shell, "small").data_location(), onnx::TensorProto::EXTERNAL);
  EXPECT_EQ(initializer_named(shell, "big").data_location(), onnx::TensorProto::DEFAULT);
  EXPECT_EQ(fs::file_size(dir + "/m.onnx.data"), 4u);
}

// ---- references a reader must refuse ----

// The conv model with its weight pointing at `location` (offset, length
// entries only when given), written to <dir>/m/m.onnx; the data file
// <dir>/m/w.bin holds 16 bytes.
std::string model_with_reference(const std::string& dir, const std::string& location, const std::string& offset,
                                 const std::string& length) {
  fs::create_directories(dir + "/m");
  write_text(dir + "/m/w.bin", std::string(16, '\x01'));
  onnx::ModelProto model = conv_model();
  onnx::TensorProto& weight = *model.mutable_graph()->mutable_initializer(0);
  weight.clear_raw_data();
  weight.set_data_location(onnx::TensorProto::EXTERNAL);
  const std::pair<std::string, std::string> entries[] = {{"location", location}, {"offset", offset}, {"length", length}};
  for (const auto& [key, value] : entries) {
    if (value.empty()) continue;
    auto* e = weight.add_external_data();
    e->set_key(key);
    e->set_value(value);
  }
  save_onnx_model(model, dir + "/m/m.onnx");
  return dir + "/m/m.onnx";
}

void expect_load_error(const std::string& path, ErrorCode code, const std::string& message) {
  try {
    load_onnx_model(path);
    ADD_FAILURE() << "expected: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code);
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(ExternalData, AValidReferenceReadsTheBytes) {
  const std::string dir = fresh_dir();
  const onnx::ModelProto loaded = load_onnx_model(model_with_reference(dir, "w.bin", "", ""));
  EXPECT_EQ(initializer_named(loaded, "conv1.weight").raw_data(), std::string(16, '\x01'));
  EXPECT_FALSE(initializer_named(loaded, "conv1.weight").has_data_location());
}

TEST(ExternalData, MissingFileIsNamed) {
  const std::string dir = fresh_dir();
  const std::string path = model_with_reference(dir, "missing.bin", "", "");
  expect_load_error(path, ErrorCode::kNotFound,
                    "initializer 'conv1.weight' of ONNX model '" + path + "': external data file '" + dir +
                        "/m/missing.bin' does not exist");
}

TEST(ExternalData, OffsetBeyondTheEndIsRefused) {
  const std::string dir = fresh_dir();
  const std::string path = model_with_reference(dir, "w.bin", "17", "");
  expect_load_error(path, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + path + "': external data offset 17 is beyond the end of '" +
                        dir + "/m/w.bin' (16 bytes)");
}

TEST(ExternalData, RangeBeyondTheEndIsRefused) {
  const std::string dir = fresh_dir();
  const std::string path = model_with_reference(dir, "w.bin", "8", "16");
  expect_load_error(path, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + path +
                        "': external data offset 8 + length 16 is beyond the end of '" + dir + "/m/w.bin' (16 bytes)");
}

TEST(ExternalData, LengthThatDisagreesWithTheDimsIsRefused) {
  const std::string dir = fresh_dir();
  const std::string path = model_with_reference(dir, "w.bin", "4", "");
  expect_load_error(path, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + path + "' (dims [2, 2, 1, 1]) needs 16 bytes, " +
                        "but its external data in '" + dir + "/m/w.bin' has 12");
}

TEST(ExternalData, ParentDirectoryEscapeIsRefused) {
  const std::string dir = fresh_dir();
  write_text(dir + "/secret.bin", std::string(16, 's'));
  const std::string path = model_with_reference(dir, "../secret.bin", "", "");
  expect_load_error(path, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + path +
                        "': external data location '../secret.bin' leaves the model's directory '" + dir + "/m'");
  const std::string hidden = model_with_reference(dir, "sub/../../secret.bin", "", "");
  expect_load_error(hidden, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + hidden +
                        "': external data location 'sub/../../secret.bin' leaves the model's directory '" + dir + "/m'");
}

TEST(ExternalData, AbsolutePathIsRefused) {
  const std::string dir = fresh_dir();
  const std::string path = model_with_reference(dir, dir + "/m/w.bin", "", "");
  expect_load_error(path, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + path + "': external data location '" + dir +
                        "/m/w.bin' is an absolute path; expected a path relative to the model's directory '" + dir + "/m'");
}

TEST(ExternalData, SymbolicLinkOutOfTheDirectoryIsRefused) {
  const std::string dir = fresh_dir();
  write_text(dir + "/secret.bin", std::string(16, 's'));
  const std::string path = model_with_reference(dir, "link.bin", "", "");
  fs::create_symlink(dir + "/secret.bin", dir + "/m/link.bin");
  expect_load_error(path, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + path +
                        "': external data location 'link.bin' leaves the model's directory '" + dir +
                        "/m' (it resolves to '" + fs::canonical(dir + "/secret.bin").string() + "')");
}

TEST(ExternalData, DirectoryAndMissingLocationAndBadNumbersAreRefused) {
  const std::string dir = fresh_dir();
  fs::create_directories(dir + "/m/sub");
  const std::string sub = model_with_reference(dir, "sub", "", "");
  expect_load_error(sub, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + sub + "': external data file '" + dir +
                        "/m/sub' is not a regular file");
  const std::string bad = model_with_reference(dir, "w.bin", "-1", "");
  expect_load_error(bad, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + bad +
                        "': external data offset '-1' is not a non-negative integer");
  const std::string none = model_with_reference(dir, "", "0", "16");
  expect_load_error(none, ErrorCode::kInvalidArgument,
                    "initializer 'conv1.weight' of ONNX model '" + none +
                        "' is stored in an external file, but its external_data has no 'location'");
}

TEST(ExternalData, BytesWithoutAFileCannotReachExternalData) {
  // parse_onnx_model reads no file: the reference stays unresolved.
  const std::string dir = fresh_dir();
  const std::string path = model_with_reference(dir, "w.bin", "", "");
  const onnx::ModelProto parsed = parse_onnx_model(file_bytes(path), "bytes");
  EXPECT_EQ(initializer_named(parsed, "conv1.weight").data_location(), onnx::TensorProto::EXTERNAL);
  EXPECT_FALSE(initializer_named(parsed, "conv1.weight").has_raw_data());
}

}  // namespace
}  // namespace amct::test
