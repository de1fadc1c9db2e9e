#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "amct/calib/ifmr.h"
#include "amct/calibrator.h"
#include "amct/error.h"
#include "amct/record.h"

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
  Calibrator calib(path, weights_record(), two_layer_config(2), {"a", "b"});
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

TEST(Calibrator, NonFiniteActivationNamesLayerAndBatch) {
  Calibrator calib("/nonexistent/r.txt", weights_record(), two_layer_config(1), {"a", "b"});
  std::vector<float> bad = {1.0f, std::nanf("")};
  try {
    calib.observe(1, bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'b', calibration batch 1"), std::string::npos);
  }
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
