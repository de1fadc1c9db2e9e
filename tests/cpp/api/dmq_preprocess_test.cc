// The recorder of quantize_preprocess's balancing model: per-channel input
// maxima from tensors of any batch layout, the record written once every DMQ
// layer has run once, and the errors of a bad input.
#include "amct/dmq_preprocess.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "amct/error.h"
#include "amct/record.h"

namespace amct {
namespace {

std::string temp_record(const std::string& name) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "amct_dmq";
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::filesystem::remove(path);
  return path.string();
}

// "conv": Conv2d with 2 input channels (max|W| 1 and 4); "fc": Linear with 3 (max|W| 1, 1, 1).
std::vector<BalanceLayer> layers() {
  BalanceLayer conv{"conv", "Conv2d", 0.5f, 4, false, {1.0f, 4.0f}};
  BalanceLayer fc{"fc", "Linear", 0.5f, 2, true, {1.0f, 1.0f, 1.0f}};
  return {conv, fc};
}

TEST(BalanceRecorder, WritesAfterTheFirstCompleteForward) {
  const std::string path = temp_record("first.txt");
  BalanceRecorder recorder(path, layers());
  // conv input [1, 2, 1, 2]: channel 0 max 4, channel 1 max 16.
  const std::vector<float> conv_in = {-4.0f, 1.0f, 16.0f, 2.0f};
  const std::vector<int64_t> conv_shape = {1, 2, 1, 2};
  EXPECT_FALSE(recorder.observe(0, conv_in, conv_shape));
  EXPECT_TRUE(recorder.observed(0));
  EXPECT_FALSE(std::filesystem::exists(path));
  // fc input [2, 1, 3], channels last: maxima 9, 1, 0.25.
  const std::vector<float> fc_in = {9.0f, -1.0f, 0.25f, 1.0f, 0.5f, -0.25f};
  const std::vector<int64_t> fc_shape = {2, 1, 3};
  EXPECT_TRUE(recorder.observe(1, fc_in, fc_shape));
  EXPECT_TRUE(recorder.finished());
  EXPECT_EQ(recorder.factors(0), (std::vector<float>{2.0f, 2.0f}));  // sqrt(4/1), sqrt(16/4)
  EXPECT_EQ(recorder.factors(1), (std::vector<float>{3.0f, 1.0f, 0.5f}));
  EXPECT_EQ(record_to_text(read_record_file(path)),
            "record {\n  key: \"conv\"\n  value {\n    tensor_balance_factor: 2.0\n    tensor_balance_factor: 2.0\n"
            "  }\n}\nrecord {\n  key: \"fc\"\n  value {\n    tensor_balance_factor: 3.0\n"
            "    tensor_balance_factor: 1.0\n    tensor_balance_factor: 0.5\n  }\n}\n");
  // Later forwards change nothing (AMCT never rewrites the file).
  const std::vector<float> big = {100.0f, 100.0f, 100.0f, 100.0f};
  EXPECT_FALSE(recorder.observe(0, big, conv_shape));
  EXPECT_EQ(recorder.factors(0), (std::vector<float>{2.0f, 2.0f}));
}

TEST(BalanceRecorder, UnbatchedConvInputUsesAxisZero) {
  BalanceRecorder recorder(temp_record("unbatched.txt"), {layers()[0]});
  // [C=2, H=1, W=2]
  EXPECT_TRUE(recorder.observe(0, std::vector<float>{1.0f, 4.0f, 64.0f, 1.0f}, std::vector<int64_t>{2, 1, 2}));
  EXPECT_EQ(recorder.factors(0), (std::vector<float>{2.0f, 4.0f}));
}

TEST(BalanceRecorder, BadInputsNameTheLayer) {
  BalanceRecorder recorder(temp_record("bad.txt"), layers());
  try {
    recorder.observe(0, std::vector<float>(6, 1.0f), std::vector<int64_t>{1, 3, 1, 2});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_STREQ(e.what(), "layer 'conv': its input has shape [1, 3, 1, 2]; expected 2 input channels at "
                           "dimension 1 of a rank-4 input");
  }
  try {
    recorder.observe(1, std::vector<float>{1.0f, std::numeric_limits<float>::infinity(), 0.0f},
                     std::vector<int64_t>{1, 3});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kRuntime);
    EXPECT_STREQ(e.what(), "layer 'fc': its input holds inf or NaN; DMQ balance factors need finite activations");
  }
  EXPECT_FALSE(recorder.observed(1));
  EXPECT_THROW(recorder.observe(1, std::vector<float>(4, 1.0f), std::vector<int64_t>{1, 3}), Error);
  EXPECT_THROW(recorder.observe(2, std::vector<float>(3, 1.0f), std::vector<int64_t>{1, 3}), Error);
}

}  // namespace
}  // namespace amct
