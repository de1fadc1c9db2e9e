// The files of accuracy_based_auto_calibration, byte for byte.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "amct/auto_calibration.h"
#include "amct/error.h"

namespace amct {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("amct_auto_calibration_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

const char* kConfig =
    R"({"version":1,"batch_num":2,"conv":{"quant_enable":true,"activation_quant_params":{"num_bits":8}},)"
    R"("fc\u00e9":{"weight_quant_params":{"channel_wise":false}}})";

TEST(ConfigWithRollback, SetsQuantEnableAndKeepsTheRestAsAmctWritesIt) {
  const std::string text = config_with_rollback(kConfig, "config.json", {{"conv", false}, {"fc\xc3\xa9", true}});
  EXPECT_EQ(text,
            "{\n"
            "    \"version\":1,\n"
            "    \"batch_num\":2,\n"
            "    \"conv\":{\n"
            "        \"quant_enable\":false,\n"
            "        \"activation_quant_params\":{\n"
            "            \"num_bits\":8\n"
            "        }\n"
            "    },\n"
            "    \"fc\xc3\xa9\":{\n"
            "        \"weight_quant_params\":{\n"
            "            \"channel_wise\":false\n"
            "        },\n"
            "        \"quant_enable\":true\n"
            "    }\n"
            "}");
}

TEST(ConfigWithRollback, ALayerWithoutEntryIsAnError) {
  try {
    config_with_rollback(kConfig, "config.json", {{"head", false}});
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "config_file 'config.json' has no entry for quantized layer 'head'");
  }
}

TEST(RankingFiles, JsonAndTable) {
  const std::vector<LayerScore> ranking = {{"conv1", 0.5}, {"fc", 0.99}};
  EXPECT_EQ(ranking_json(ranking),
            "[\n    [\n        \"conv1\",\n        0.5\n    ],\n    [\n        \"fc\",\n        0.99\n    ]\n]");
  const std::string header =
      "Layers by quantization sensitivity (similarity 0.5 + 0.5 * cos(float, fake-quant output);\n"
      "lowest first, the order in which the search rolls layers back)\n\n"
      "rank  layer  similarity  final\n";
  EXPECT_EQ(ranking_table(ranking, {{"conv1", false}, {"fc", true}}, RollbackSearch::Outcome::kPartialRollback),
            header +
                "   1  conv1  0.50000000  rolled back\n"
                "   2  fc     0.99000000  quantized\n");
  EXPECT_EQ(ranking_table(ranking, {{"conv1", false}, {"fc", false}}, RollbackSearch::Outcome::kAllRolledBack),
            header +
                "   1  conv1  0.50000000  rolled back\n"
                "   2  fc     0.99000000  rolled back\n");
}

TEST(HistoryFile, ObjectsOneAfterAnother) {
  const std::vector<SearchRecord> history = {{{{"a", true}}, {false, 0.25}}, {{{"a", false}}, {true, 0.0}}};
  EXPECT_EQ(history_json(history),
            "{\n    \"roll_back_config\":{\n        \"a\":true\n    },\n    \"metric_eval\":[\n        false,\n"
            "        0.25\n    ]\n}"
            "{\n    \"roll_back_config\":{\n        \"a\":false\n    },\n    \"metric_eval\":[\n        true,\n"
            "        0.0\n    ]\n}");
}

TEST(AutoCalibrationResults, WritesTheSetAndLeavesTheConfigAlone) {
  const std::string dir = fresh_dir("results");
  const std::string config = dir + "/config.json";
  write(config, kConfig);
  write(dir + "/trial_record.txt", "record");
  RollbackSearch search({{"conv", 0.4}, {"fc\xc3\xa9", 0.9}}, {false, 0.5}, {true, 0.0});
  ASSERT_TRUE(search.searching());
  write_trial_config(dir + "/trial1.json", config, search.proposal());
  EXPECT_EQ(contents(dir + "/trial1.json"), config_with_rollback(kConfig, config, search.proposal()));
  search.report({true, 0.01});
  ASSERT_EQ(search.outcome(), RollbackSearch::Outcome::kPartialRollback);
  write_auto_calibration_results(search, config, dir, dir + "/log/history.json",
                                 {{dir + "/trial_record.txt", dir + "/out/record.txt"}});
  EXPECT_EQ(contents(config), kConfig);
  EXPECT_EQ(contents(dir + "/" + kFinalConfigFile),
            config_with_rollback(kConfig, config, {{"conv", false}, {"fc\xc3\xa9", true}}));
  EXPECT_EQ(contents(dir + "/" + kRankingFile), ranking_json(search.ranking()));
  EXPECT_EQ(contents(dir + "/" + kRankingTableFile),
            ranking_table(search.ranking(), search.final_config(), search.outcome()));
  EXPECT_EQ(contents(dir + "/log/history.json"), history_json(search.history()));
  EXPECT_EQ(contents(dir + "/out/record.txt"), "record");
}

TEST(AutoCalibrationResults, NoFinalConfigWhenEveryLayerIsRolledBack) {
  const std::string dir = fresh_dir("all_rolled_back");
  write(dir + "/config.json", kConfig);
  RollbackSearch search({{"conv", 0.4}}, {false, 0.5}, {true, 0.0});
  ASSERT_EQ(search.outcome(), RollbackSearch::Outcome::kAllRolledBack);
  write_auto_calibration_results(search, dir + "/config.json", dir, dir + "/history.json", {});
  EXPECT_FALSE(fs::exists(dir + "/" + kFinalConfigFile));
  EXPECT_TRUE(fs::exists(dir + "/" + kRankingFile));
  EXPECT_TRUE(fs::exists(dir + "/" + kRankingTableFile));
}

TEST(AutoCalibrationResults, AMissingCopySourceChangesNothing) {
  const std::string dir = fresh_dir("missing_source");
  write(dir + "/config.json", kConfig);
  write(dir + "/" + std::string(kRankingFile), "earlier");
  RollbackSearch search({{"conv", 0.4}, {"fc\xc3\xa9", 0.9}}, {true, 0.0}, {true, 0.0});
  EXPECT_THROW(write_auto_calibration_results(search, dir + "/config.json", dir, dir + "/history.json",
                                              {{dir + "/absent.txt", dir + "/record.txt"}}),
               Error);
  EXPECT_EQ(contents(dir + "/" + kRankingFile), "earlier");
  EXPECT_FALSE(fs::exists(dir + "/history.json"));
}

}  // namespace
}  // namespace amct
