// save_model across runs: a modified ONNX is refused with the record of
// another quantize_model run (issue 10 item 12).
#include <gtest/gtest.h>

#include <cmath>

#include "amct/error.h"
#include "amct/weights_fingerprint.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

namespace fs = std::filesystem;

// The modified ONNX and the record's sidecar each carry a fingerprint; a
// pair from two runs is refused before anything is written.
TEST(SaveModelRunLink, MismatchedFingerprintsAreRefusedNamingBothFiles) {
  const std::string dir = fresh_dir();
  onnx::ModelProto model = conv_model();
  set_model_fingerprint(model, "00000000000000aa");
  save_onnx_model(model, dir + "/modified.onnx");
  write_text(dir + "/record.txt", conv_record("0.05"));
  write_text(record_sidecar_path(dir + "/record.txt"), record_sidecar_json("00000000000000bb"));
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
    FAIL() << "a record of another run was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string message = e.what();
    EXPECT_NE(message.find("modified ONNX file '" + dir + "/modified.onnx' and record file '" + dir +
                           "/record.txt' come from different quantize_model runs"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("00000000000000aa"), std::string::npos) << message;
    EXPECT_NE(message.find("00000000000000bb"), std::string::npos) << message;
  }
  EXPECT_FALSE(fs::exists(dir + "/out"));

  // The matching sidecar is accepted, and the outputs keep the fingerprint.
  write_text(record_sidecar_path(dir + "/record.txt"), record_sidecar_json("00000000000000aa"));
  const auto written = save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net").written;
  ASSERT_EQ(written.size(), 3u);
  for (const auto& path : written) EXPECT_EQ(model_fingerprint(load_onnx_model(path)), "00000000000000aa") << path;
}

// AMCT's own files carry no fingerprint; either side without one is accepted.
TEST(SaveModelRunLink, PairsWithoutBothFingerprintsAreAccepted) {
  const std::string dir = fresh_dir();
  onnx::ModelProto model = conv_model();
  save_onnx_model(model, dir + "/plain.onnx");
  set_model_fingerprint(model, "00000000000000aa");
  save_onnx_model(model, dir + "/marked.onnx");
  write_text(dir + "/plain.txt", conv_record("0.05"));
  write_text(dir + "/marked.txt", conv_record("0.05"));
  write_text(record_sidecar_path(dir + "/marked.txt"), record_sidecar_json("00000000000000bb"));
  EXPECT_NO_THROW(save_model(dir + "/plain.onnx", dir + "/plain.txt", dir + "/out/a"));
  EXPECT_NO_THROW(save_model(dir + "/marked.onnx", dir + "/plain.txt", dir + "/out/b"));
  EXPECT_NO_THROW(save_model(dir + "/plain.onnx", dir + "/marked.txt", dir + "/out/c"));
}

TEST(SaveModelRunLink, BadSidecarIsNamed) {
  const std::string dir = fresh_dir();
  onnx::ModelProto model = conv_model();
  set_model_fingerprint(model, "00000000000000aa");
  save_onnx_model(model, dir + "/modified.onnx");
  write_text(dir + "/record.txt", conv_record("0.05"));
  const auto expect_error = [&](const std::string& text, const std::string& needle) {
    write_text(record_sidecar_path(dir + "/record.txt"), text);
    try {
      save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
      ADD_FAILURE() << text;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("record sidecar '" + dir + "/record.txt.amct.json'"), std::string::npos) << message;
      EXPECT_NE(message.find(needle), std::string::npos) << message;
    }
  };
  expect_error("{", "not a JSON object");
  expect_error(R"({"version": 2, "weights_fingerprint": "aa"})", "\"version\" must be 1");
  expect_error(R"({"version": 1, "weights_fingerprint": 7})", "\"weights_fingerprint\" must be a string");
  expect_error(std::string(5000, '['), "expected at most 4096");
}

TEST(WeightsFingerprint, DependsOnNamesAndEveryWeightByte) {
  const std::vector<float> w = {1.0f, 2.0f};
  const auto hex = [](std::initializer_list<std::pair<std::string, std::vector<float>>> layers) {
    WeightsFingerprint f;
    for (const auto& [name, weight] : layers) f.add_layer(name, weight);
    return f.hex();
  };
  const std::string base = hex({{"a", w}, {"b", {}}});
  EXPECT_EQ(base.size(), 16u);
  EXPECT_EQ(base, hex({{"a", w}, {"b", {}}}));
  EXPECT_NE(base, hex({{"a", {1.0f, std::nextafter(2.0f, 3.0f)}}, {"b", {}}}));
  EXPECT_NE(base, hex({{"c", w}, {"b", {}}}));
  EXPECT_NE(base, hex({{"b", {}}, {"a", w}}));
  EXPECT_NE(hex({{"ab", {}}}), hex({{"a", {}}, {"b", {}}}));
}

}  // namespace
}  // namespace amct::test
