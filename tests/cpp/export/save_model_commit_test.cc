// save_model across calls: the outputs of one call are replaced together or
// not at all (issue 10 item 14).
#include <gtest/gtest.h>

#include "amct/error.h"
#include "amct/file_io.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

namespace fs = std::filesystem;

std::string contents(const std::string& path) { return read_file(path, "test output"); }

TEST(SaveModelCommit, FailedSecondSaveKeepsEveryEarlierOutput) {
  const std::string dir = fresh_dir();
  save_onnx_model(conv_model(), dir + "/modified.onnx");
  write_text(dir + "/first.txt", conv_record("0.05"));
  write_text(dir + "/second.txt", conv_record("0.07"));
  const std::string prefix = dir + "/out/net";
  save_model(dir + "/modified.onnx", dir + "/first.txt", prefix);
  const std::string deploy = contents(prefix + "_deploy_model.onnx");
  const std::string qdq = contents(prefix + "_qdq_model.onnx");

  // The fake-quant output cannot be written: its path is now a directory.
  fs::remove(prefix + "_fake_quant_model.onnx");
  fs::create_directories(prefix + "_fake_quant_model.onnx/blocker");
  try {
    save_model(dir + "/modified.onnx", dir + "/second.txt", prefix);
    FAIL() << "save_model wrote over a directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(prefix + "_fake_quant_model.onnx' is a directory"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(contents(prefix + "_deploy_model.onnx"), deploy);
  EXPECT_EQ(contents(prefix + "_qdq_model.onnx"), qdq);
  for (const auto& entry : fs::directory_iterator(dir + "/out"))
    EXPECT_NE(entry.path().filename().string().front(), '.') << "left behind: " << entry.path();

  // With the directory gone the same call replaces all three.
  fs::remove_all(prefix + "_fake_quant_model.onnx");
  save_model(dir + "/modified.onnx", dir + "/second.txt", prefix);
  EXPECT_NE(contents(prefix + "_deploy_model.onnx"), deploy);
  EXPECT_NE(contents(prefix + "_qdq_model.onnx"), qdq);
  EXPECT_TRUE(fs::exists(prefix + "_fake_quant_model.onnx"));
}

}  // namespace
}  // namespace amct::test
