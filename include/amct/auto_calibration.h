// The engine of accuracy_based_auto_calibration (docs/amct-reference.md#accuracy_based_auto_calibration):
// the per-layer sensitivity, the ranking, AMCT's binary-search rollback and the files it writes.
// torch runs the models and the user's evaluator (python/amct_pytorch/auto_calibration.py); every
// decision taken from their results is made here.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace amct {

// AMCT's CosineSimilarity sensitivity of one batch of a layer's output:
// 0.5 + 0.5 * cos(reference, quantized), 1 when the reference is all zero, 0
// when only the quantized output is. Sums in double. Throws kInvalidArgument
// naming `layer` when the sizes differ or a value is not finite.
double cosine_similarity_score(std::span<const float> reference, std::span<const float> quantized,
                               const std::string& layer);

struct LayerScore {
  std::string layer;
  double similarity = 0.0;
};

// The mean score of each layer over the batches it saw, one batch at a time:
// no output is kept, so the memory does not grow with the batches. Safe to
// feed from several threads.
class LayerSensitivity {
 public:
  explicit LayerSensitivity(std::vector<std::string> layers);

  size_t layer_count() const { return layers_.size(); }
  const std::string& layer_name(size_t index) const { return layers_.at(index).layer; }
  int64_t batches(size_t index) const;
  void add_batch(size_t index, std::span<const float> reference, std::span<const float> quantized);
  // The mean scores in layer order; throws kRuntime naming a layer that saw no batch.
  std::vector<LayerScore> scores() const;

 private:
  struct Layer {
    std::string layer;
    double sum = 0.0;
    int64_t batches = 0;
  };
  std::vector<Layer> layers_;
  mutable std::mutex mutex_;
};

// The layers by ascending similarity, the most sensitive first; equal scores keep layer order.
std::vector<LayerScore> rank_layers(std::vector<LayerScore> scores);

// What the user's metric_eval(original, new) returned.
struct MetricEval {
  bool satisfied = false;
  double loss = 0.0;
};

// Per quantizable layer, in a fixed order: true keeps it quantized, false rolls it back.
using RollbackConfig = std::vector<std::pair<std::string, bool>>;

// One entry of AMCT's search history.
struct SearchRecord {
  RollbackConfig config;
  MetricEval metric;
};

// AMCT's BinarySearch strategy and fine search. Every trial rolls back the k
// most sensitive layers of the ranking; k is bisected on the satisfied /
// unsatisfied outcome. A proposal that rolls back every layer ends the search
// without a trial; when the last trial failed, the last satisfied proposal is
// evaluated once more so that the saved model is the chosen one.
class RollbackSearch {
 public:
  enum class Outcome {
    kSearching,         // proposal() waits for a trial
    kAllQuantized,      // the global calibration satisfied the metric
    kPartialRollback,   // final_config() rolls some layers back
    kAllRolledBack,     // no configuration satisfied the metric: no model
  };

  // `scores` in layer order (the global record's order); `global` is the
  // metric of the model with every layer quantized, `original` the metric of
  // the float model compared with itself (the all-rolled-back record).
  RollbackSearch(std::vector<LayerScore> scores, MetricEval global, MetricEval original);

  Outcome outcome() const { return outcome_; }
  bool searching() const { return outcome_ == Outcome::kSearching; }
  // The configuration to evaluate next, in ranking order; only while searching().
  const RollbackConfig& proposal() const;
  // Layers the proposal rolls back, most sensitive first.
  std::vector<std::string> rolled_back() const;
  // Reports the metric of the trial of proposal().
  void report(MetricEval metric);

  // Trials done (the global calibration not counted) and the most any search over these layers takes.
  int trials() const { return trials_; }
  int max_trials() const;

  const std::vector<LayerScore>& ranking() const { return ranking_; }
  const std::vector<SearchRecord>& history() const { return history_; }
  // The configuration of the saved model; all false when every layer was rolled back.
  const RollbackConfig& final_config() const { return final_; }

 private:
  RollbackConfig config_rolling_back(int last) const;
  void propose(int last);
  void advance(bool satisfied);

  std::vector<LayerScore> ranking_;
  MetricEval original_;
  std::vector<SearchRecord> history_;
  RollbackConfig final_;
  Outcome outcome_ = Outcome::kSearching;
  // Bisection over the index of the last rolled-back layer in ranking_.
  int left_ = 0;
  int right_ = 0;
  int mid_ = 0;
  int last_satisfied_ = -1;  // -1: no trial satisfied yet
  int proposed_ = -1;        // the index the proposal rolls back to
  int evaluated_ = -1;       // the index of the last trial
  bool stopping_ = false;
  RollbackConfig proposal_;
  int trials_ = 0;
};

// The output file names, in the directory of save_dir.
inline constexpr const char* kFinalConfigFile = "accuracy_based_auto_calibration_final_config.json";
inline constexpr const char* kRankingFile = "accuracy_based_auto_calibration_ranking_information.json";
inline constexpr const char* kRankingTableFile = "accuracy_based_auto_calibration_ranking_information.txt";
inline constexpr const char* kHistoryFile = "accuracy_based_auto_calibration_record.json";

// The user's config JSON text with quant_enable of every layer of `config`
// set as it says, the rest of the file as it was; written as AMCT writes it
// (indent 4, ',' and ':' separators, non-ASCII as is). Errors name `origin`.
std::string config_with_rollback(const std::string& config_text, const std::string& origin,
                                 const RollbackConfig& config);

// [[layer, similarity], ...] as AMCT writes the ranking information.
std::string ranking_json(const std::vector<LayerScore>& ranking);
// The ranking as an aligned text table: rank, layer, similarity and whether
// the final configuration keeps the layer quantized.
std::string ranking_table(const std::vector<LayerScore>& ranking, const RollbackConfig& final_config,
                          RollbackSearch::Outcome outcome);
// The search history as AMCT writes it: the JSON objects one after another.
std::string history_json(const std::vector<SearchRecord>& history);

// Writes the config of one trial to `path`: config_file's JSON with the
// proposal's quant_enable values. config_file itself is only read.
void write_trial_config(const std::string& path, const std::string& config_file, const RollbackConfig& config);

// Writes the results of a finished search as one set of files: in
// `directory` the ranking JSON and table and, unless every layer was rolled
// back, the final config; the history at `history_file`; and each
// (source, target) of `copies` (the final record and its sidecar).
void write_auto_calibration_results(const RollbackSearch& search, const std::string& config_file,
                                    const std::string& directory, const std::string& history_file,
                                    const std::vector<std::pair<std::string, std::string>>& copies);

}  // namespace amct
