// The CosineSimilarity sensitivity, its streaming mean and the ranking.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "amct/auto_calibration.h"
#include "amct/error.h"

namespace amct {
namespace {

double score(const std::vector<float>& reference, const std::vector<float>& quantized) {
  return cosine_similarity_score(reference, quantized, "conv");
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

TEST(CosineSimilarityScore, IsHalfPlusHalfCosine) {
  EXPECT_DOUBLE_EQ(score({1, 2, 3}, {2, 4, 6}), 1.0);
  EXPECT_DOUBLE_EQ(score({1, 0}, {0, 1}), 0.5);
  EXPECT_DOUBLE_EQ(score({1, 0}, {-1, 0}), 0.0);
  EXPECT_DOUBLE_EQ(score({3, 4}, {4, 3}), 0.5 + 0.5 * 24.0 / 25.0);
}

TEST(CosineSimilarityScore, AmctZeroCases) {
  EXPECT_DOUBLE_EQ(score({0, 0, 0}, {0, 0, 0}), 1.0);
  EXPECT_DOUBLE_EQ(score({0, 0, 0}, {1, 2, 3}), 1.0);  // nothing to lose
  EXPECT_DOUBLE_EQ(score({1, 2, 3}, {0, 0, 0}), 0.0);  // everything lost
}

TEST(CosineSimilarityScore, SumsInDoubleWhereFloatWouldOverflow) {
  const std::vector<float> big(4, 1e30f);
  EXPECT_DOUBLE_EQ(score(big, big), 1.0);
}

TEST(CosineSimilarityScore, RefusesMismatchedAndNonFiniteOutputs) {
  EXPECT_EQ(error_of([] { score({1, 2}, {1}); }),
            "layer 'conv': the float output has 2 values but the fake-quant output 1");
  EXPECT_EQ(error_of([] { score({1, std::numeric_limits<float>::infinity()}, {1, 2}); }),
            "layer 'conv': its float or fake-quant output holds inf or nan, so no similarity can be computed");
}

TEST(LayerSensitivity, MeanOverBatchesInLayerOrder) {
  LayerSensitivity sensitivity({"b", "a"});
  sensitivity.add_batch(0, std::vector<float>{1, 0}, std::vector<float>{1, 0});   // 1.0
  sensitivity.add_batch(0, std::vector<float>{1, 0}, std::vector<float>{0, 1});   // 0.5
  sensitivity.add_batch(1, std::vector<float>{3, 4}, std::vector<float>{4, 3});   // 0.98
  EXPECT_EQ(sensitivity.batches(0), 2);
  const std::vector<LayerScore> scores = sensitivity.scores();
  ASSERT_EQ(scores.size(), 2u);
  EXPECT_EQ(scores[0].layer, "b");
  EXPECT_DOUBLE_EQ(scores[0].similarity, 0.75);
  EXPECT_EQ(scores[1].layer, "a");
  EXPECT_DOUBLE_EQ(scores[1].similarity, 0.98);
}

TEST(LayerSensitivity, ALayerWithoutBatchesIsAnError) {
  LayerSensitivity sensitivity({"conv", "fc"});
  sensitivity.add_batch(0, std::vector<float>{1}, std::vector<float>{1});
  EXPECT_EQ(error_of([&] { sensitivity.scores(); }),
            "layer 'fc' saw no calibration batch while its sensitivity was measured: it is not executed by "
            "model_evaluator.calibration()");
  EXPECT_EQ(error_of([&] { sensitivity.add_batch(2, std::vector<float>{1}, std::vector<float>{1}); }),
            "layer index 2 is out of range; 2 layers are measured");
}

TEST(RankLayers, AscendingAndStableOnTies) {
  const std::vector<LayerScore> ranked = rank_layers({{"a", 0.9}, {"b", 0.5}, {"c", 0.9}, {"d", 0.7}});
  std::vector<std::string> names;
  for (const auto& s : ranked) names.push_back(s.layer);
  EXPECT_EQ(names, (std::vector<std::string>{"b", "d", "a", "c"}));
}

}  // namespace
}  // namespace amct
