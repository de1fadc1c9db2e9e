// The CosineSimilarity sensitivity of docs/amct-reference.md#accuracy_based_auto_calibration and the ranking.
#include <algorithm>
#include <cmath>

#include "amct/auto_calibration.h"
#include "amct/error.h"

namespace amct {

double cosine_similarity_score(std::span<const float> reference, std::span<const float> quantized,
                               const std::string& layer) {
  if (reference.size() != quantized.size())
    invalid("layer '" + layer + "': the float output has " + std::to_string(reference.size()) +
            " values but the fake-quant output " + std::to_string(quantized.size()));
  double dot = 0.0;
  double reference_norm = 0.0;
  double quantized_norm = 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    const double r = reference[i];
    const double q = quantized[i];
    dot += r * q;
    reference_norm += r * r;
    quantized_norm += q * q;
  }
  if (!std::isfinite(dot) || !std::isfinite(reference_norm) || !std::isfinite(quantized_norm))
    invalid("layer '" + layer + "': its float or fake-quant output holds inf or nan, so no similarity can be computed");
  // AMCT's two special cases: nothing to lose, and everything lost.
  if (reference_norm == 0.0) return 1.0;
  if (quantized_norm == 0.0) return 0.0;
  return 0.5 + 0.5 * dot / (std::sqrt(reference_norm) * std::sqrt(quantized_norm));
}

LayerSensitivity::LayerSensitivity(std::vector<std::string> layers) {
  for (auto& name : layers) layers_.push_back({std::move(name), 0.0, 0});
}

int64_t LayerSensitivity::batches(size_t index) const {
  std::lock_guard lock(mutex_);
  return layers_.at(index).batches;
}

void LayerSensitivity::add_batch(size_t index, std::span<const float> reference, std::span<const float> quantized) {
  if (index >= layers_.size())
    invalid("layer index " + std::to_string(index) + " is out of range; " + std::to_string(layers_.size()) +
            " layers are measured");
  // The score is computed outside the lock: it is the expensive part.
  const double score = cosine_similarity_score(reference, quantized, layers_[index].layer);
  std::lock_guard lock(mutex_);
  layers_[index].sum += score;
  ++layers_[index].batches;
}

std::vector<LayerScore> LayerSensitivity::scores() const {
  std::lock_guard lock(mutex_);
  std::vector<LayerScore> out;
  for (const Layer& layer : layers_) {
    if (layer.batches == 0)
      fail(ErrorCode::kRuntime, "layer '" + layer.layer +
                                    "' saw no calibration batch while its sensitivity was measured: it is not "
                                    "executed by model_evaluator.calibration()");
    out.push_back({layer.layer, layer.sum / static_cast<double>(layer.batches)});
  }
  return out;
}

std::vector<LayerScore> rank_layers(std::vector<LayerScore> scores) {
  std::stable_sort(scores.begin(), scores.end(),
                   [](const LayerScore& a, const LayerScore& b) { return a.similarity < b.similarity; });
  return scores;
}

}  // namespace amct
