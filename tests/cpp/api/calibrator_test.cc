#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "amct/calib/activation_collector.h"
#include "amct/calib/ifmr.h"
#include "amct/calibrator.h"
#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/record.h"
#include "amct/weights_fingerprint.h"

namespace amct {
namespace {

QuantConfig two_layer_config(int64_t batch_num) {
  QuantConfig config;
  config.batch_num = batch_num;
  for (const char* name : {"a", "b"}) {
    LayerQuantConfig layer;
    layer.name = name;
    config.layers.push_back(layer);
  }
  return config;
}

ScaleOffsetRecord weights_record() {
  ScaleOffsetRecord record;
  for (const char* name : {"a", "b"}) {
    auto* e = record.add_record();
    e->set_key(name);
    e->mutable_value()->add_scale_w(0.5f);
    e->mutable_value()->add_offset_w(0);
    e->mutable_value()->set_wts_type("INT8");
  }
  return record;
}

TEST(Calibrator, WritesRecordWhenEveryLayerSawBatchNum) {
  const auto dir = std::filesystem::temp_directory_path() / "amct_calibrator_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "record.txt").string();
  std::filesystem::remove(path);
  Calibrator calib(path, weights_record(), two_layer_config(2), std::vector<std::string>{"a", "b"});
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  std::vector<float> batch1(5000), batch2(5000);
  for (auto& v : batch1) v = normal(gen);
  for (auto& v : batch2) v = 2 * normal(gen);

  EXPECT_FALSE(calib.observe(0, batch1));
  EXPECT_FALSE(calib.observe(0, batch2));
  EXPECT_FALSE(calib.observe(0, batch2));  // past batch_num: ignored
  EXPECT_EQ(calib.batches_seen(0), 2);
  EXPECT_FALSE(calib.observe(1, batch1));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(calib.observe(1, batch1));
  EXPECT_TRUE(calib.finished());

  const auto record = read_record_file(path);
  std::vector<float> all(batch1);
  all.insert(all.end(), batch2.begin(), batch2.end());
  const ScaleOffset exact = ifmr_exact(all, ActivationQuantParams{});
  const auto* a = find_record(record, "a");
  ASSERT_NE(a, nullptr);
  EXPECT_NEAR(a->scale_d(), exact.scale, 0.01 * exact.scale);
  EXPECT_EQ(a->act_type(), "INT8");
  EXPECT_EQ(a->scale_w(0), 0.5f);  // the weight part is kept
  std::filesystem::remove_all(dir);
}

// The scales of all tensors are computed together, in parallel, after the
// last tensor's last batch; each must be what its collector alone gives.
TEST(Calibrator, ParallelScalesMatchEachCollectorAlone) {
  const auto dir = std::filesystem::temp_directory_path() / "amct_calibrator_parallel_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "record.txt").string();
  QuantConfig config;
  config.batch_num = 2;
  ScaleOffsetRecord record;
  std::vector<std::string> names;
  for (int i = 0; i < 24; ++i) {
    LayerQuantConfig layer;
    layer.name = "l" + std::to_string(i);
    if (i % 2 == 1) layer.activation.act_algo = "hfmg";
    config.layers.push_back(layer);
    names.push_back(layer.name);
    auto* e = record.add_record();
    e->set_key(layer.name);
    e->mutable_value()->add_scale_w(0.5f);
    e->mutable_value()->add_offset_w(0);
    e->mutable_value()->set_wts_type("INT8");
  }
  Calibrator calib(path, record, config, names);
  std::vector<std::unique_ptr<ActivationCollector>> alone;
  for (const auto& layer : config.layers) alone.push_back(make_activation_collector(layer.activation, 2));
  std::mt19937 gen(3);
  for (int batch = 0; batch < 2; ++batch)
    for (size_t i = 0; i < names.size(); ++i) {
      std::normal_distribution<float> normal(0.1f * static_cast<float>(i), 1.0f + static_cast<float>(i));
      std::vector<float> values(20000);
      for (auto& v : values) v = normal(gen);
      alone[i]->observe(values);
      EXPECT_EQ(calib.observe(i, values), batch == 1 && i + 1 == names.size());
    }
  const auto written = read_record_file(path);
  for (size_t i = 0; i < names.size(); ++i) {
    const ScaleOffset expected = alone[i]->finalize();
    const auto* entry = find_record(written, names[i]);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->scale_d(), expected.scale) << names[i];
    EXPECT_EQ(entry->offset_d(), expected.offset) << names[i];
  }
  std::filesystem::remove_all(dir);
}

TEST(Calibrator, NonFiniteActivationNamesLayerAndBatch) {
  Calibrator calib("/nonexistent/r.txt", weights_record(), two_layer_config(1), std::vector<std::string>{"a", "b"});
  std::vector<float> bad = {1.0f, std::nanf("")};
  try {
    calib.observe(1, bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'b' (input), calibration batch 1"), std::string::npos);
  }
}

// Each (layer, role) has its own collector: the input goes to scale_d, the
// recurrent state to scale_h and the output to the ranges sidecar, and the
// record file itself keeps AMCT's fields only.
TEST(Calibrator, RolesGoToTheirRecordFieldsAndTheSidecar) {
  const auto dir = std::filesystem::temp_directory_path() / "amct_calibrator_roles";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "record.txt").string();
  Calibrator calib(path, weights_record(), two_layer_config(1),
                   std::vector<CalibrationTarget>{{"a", TensorRole::kInput},
                                                  {"a", TensorRole::kRecurrent},
                                                  {"a", TensorRole::kOutput},
                                                  {"b", TensorRole::kInput}});
  EXPECT_EQ(calib.index_of("a", TensorRole::kOutput), 2u);
  EXPECT_THROW(calib.index_of("b", TensorRole::kOutput), Error);
  const std::vector<float> input = {-1.0f, 0.5f, 1.0f}, state = {-4.0f, 4.0f}, output = {0.0f, 2.0f};
  EXPECT_FALSE(calib.observe(0, input));
  EXPECT_FALSE(calib.observe(1, state));
  EXPECT_FALSE(calib.observe(2, output));
  EXPECT_TRUE(calib.observe(3, input));

  const auto record = read_record_file(path);
  const auto* a = find_record(record, "a");
  ActivationQuantParams params;
  EXPECT_EQ(a->scale_d(), ifmr_exact(input, params).scale);
  EXPECT_EQ(a->scale_h(), ifmr_exact(state, params).scale);
  EXPECT_EQ(a->offset_h(), ifmr_exact(state, params).offset);
  const std::vector<TensorRange> ranges = read_tensor_ranges(tensor_ranges_path(path));
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].layer, "a");
  EXPECT_EQ(ranges[0].role, TensorRole::kOutput);
  EXPECT_EQ(ranges[0].scale, ifmr_exact(output, params).scale);
  EXPECT_EQ(ranges[0].offset, ifmr_exact(output, params).offset);
  EXPECT_EQ(ranges[0].bits, 8);
  EXPECT_EQ(record_to_text(record).find("ranges"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// Issue 10 item 15: a record that cannot be written when calibration ends is
// retried by the next batch, and finished() stays false until it is written.
TEST(Calibrator, FailedRecordWriteIsRetriedByTheNextBatch) {
  const auto dir = std::filesystem::temp_directory_path() / "amct_calibrator_retry";
  std::filesystem::remove_all(dir);
  const std::string path = (dir / "sub" / "record.txt").string();
  std::filesystem::create_directories(dir / "sub");
  Calibrator calib(path, weights_record(), two_layer_config(1), std::vector<std::string>{"a", "b"}, "0123456789abcdef");
  const std::vector<float> batch = {-1.0f, 0.5f, 1.0f};
  EXPECT_FALSE(calib.observe(0, batch));
  // A file where the directory was: it cannot be recreated, so the write fails.
  std::filesystem::remove_all(dir / "sub");
  std::ofstream(dir / "sub") << "x";
  try {
    calib.observe(1, batch);
    ADD_FAILURE() << "the record write did not fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIoError);
    EXPECT_NE(std::string(e.what()).find("record file"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(calib.finished());
  EXPECT_THROW(calib.observe(0, batch), Error);  // still failing: raised again, not swallowed
  EXPECT_FALSE(calib.finished());

  std::filesystem::remove(dir / "sub");
  EXPECT_TRUE(calib.observe(0, batch));
  EXPECT_TRUE(calib.finished());
  EXPECT_TRUE(find_record(read_record_file(path), "a")->has_scale_d());
  EXPECT_EQ(read_record_fingerprint(path), "0123456789abcdef");
  EXPECT_FALSE(calib.observe(1, batch));  // written: later batches pass through
  std::filesystem::remove_all(dir);
}

TEST(Calibrator, ExplicitWriteRecordNamesTheUnfinishedLayer) {
  const auto dir = std::filesystem::temp_directory_path() / "amct_calibrator_explicit";
  std::filesystem::remove_all(dir);
  const std::string path = (dir / "record.txt").string();
  Calibrator calib(path, weights_record(), two_layer_config(2), std::vector<std::string>{"a", "b"});
  const std::vector<float> batch = {-1.0f, 0.5f, 1.0f};
  calib.observe(0, batch);
  calib.observe(0, batch);
  calib.observe(1, batch);
  try {
    calib.write_record();
    ADD_FAILURE() << "an unfinished calibration was written";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'b' (input) has seen 1 of 2 batches"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(calib.observe(1, batch));
  calib.write_record();  // rewriting a finished record is harmless
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(record_sidecar_path(path)));  // no fingerprint given
  std::filesystem::remove_all(dir);
}

// Issue 10 item 18: activations too large for float32 arithmetic make the scale
// infinite when it is computed after the last batch; the error names the layer,
// its role and the batch. Scales are computed once every layer has its
// batches, so the error comes with the last layer's last batch.
TEST(Calibrator, InfiniteScaleNamesLayerRoleAndBatch) {
  Calibrator calib("/nonexistent/r.txt", weights_record(), two_layer_config(2), std::vector<std::string>{"a", "b"});
  const std::vector<float> huge = {-3e38f, 3e38f, 1.0f};  // max - min overflows float32
  const std::vector<float> plain = {-1.0f, 0.5f, 1.0f};
  EXPECT_FALSE(calib.observe(1, huge));
  EXPECT_FALSE(calib.observe(1, huge));
  EXPECT_FALSE(calib.observe(0, plain));
  try {
    calib.observe(0, plain);
    ADD_FAILURE() << "no error for activations of 3e38";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layer 'b' (input), calibration batch 2 (the last"), std::string::npos) << message;
    EXPECT_NE(message.find("Param scale has invalid value"), std::string::npos) << message;
  }
}

TEST(Calibrator, DuplicateTargetsAreRefused) {
  EXPECT_THROW(Calibrator("r.txt", weights_record(), two_layer_config(1),
                          std::vector<CalibrationTarget>{{"a", TensorRole::kInput}, {"a", TensorRole::kInput}}),
               Error);
}

TEST(TensorRanges, BadFilesNameTheEntryAndField) {
  const auto dir = std::filesystem::temp_directory_path() / "amct_ranges_bad";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "r.ranges.json").string();
  const auto expect_error = [&](const std::string& text, const std::string& needle) {
    write_file_atomic(path, text, "test");
    try {
      read_tensor_ranges(path);
      ADD_FAILURE() << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("[", "not a JSON object");
  expect_error(R"({"version": 2, "ranges": []})", "\"version\" must be 1");
  expect_error(R"({"version": 1, "ranges": [{"layer": "a"}]})", "entry 0");
  expect_error(R"({"version": 1, "ranges": [{"layer": "a", "role": "x", "scale": 1, "offset": 0, "bits": 8}]})",
               "role is \"x\"");
  expect_error(R"({"version": 1, "ranges": [{"layer": "a", "role": "output", "scale": 1e-45, "offset": 0, "bits": 8}]})",
               "positive normal float32");
  expect_error(R"({"version": 1, "ranges": [{"layer": "a", "role": "output", "scale": 1, "offset": 300, "bits": 8}]})",
               "[-128, 127]");
  expect_error(std::string(100, '[') + std::string(100, ']'), "nested deeper");
  std::filesystem::remove_all(dir);
}

TEST(Calibrator, Fp16PrecisionRounding) {
  EXPECT_EQ(round_to_fp16_precision(0.1f), static_cast<float>(static_cast<_Float16>(0.1f)));
  EXPECT_EQ(round_to_fp16_precision(1.0f), 1.0f);
  const float tiny = 1e-6f;  // below fp16's normal range: rounded via its square root
  const float root = static_cast<float>(static_cast<_Float16>(std::sqrt(tiny)));
  EXPECT_EQ(round_to_fp16_precision(tiny), root * root);
}

}  // namespace
}  // namespace amct
