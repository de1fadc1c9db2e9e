// The files of accuracy_based_auto_calibration (docs/amct-reference.md#accuracy_based_auto_calibration):
// the trial and final configs, the ranking (AMCT's JSON and a readable table) and the search history.
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "amct/auto_calibration.h"
#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/json_writer.h"
#include "amct/text_check.h"

namespace amct {
namespace {

using Json = nlohmann::ordered_json;

// AMCT writes these files with json.dumps(indent=4, separators=(',', ':'), ensure_ascii=False).
std::string write_json(const Json& value) { return to_python_json(value, 4, /*ascii_only=*/false); }

Json rollback_json(const RollbackConfig& config) {
  Json out = Json::object();
  for (const auto& [layer, quantized] : config) out[layer] = quantized;
  return out;
}

}  // namespace

std::string config_with_rollback(const std::string& config_text, const std::string& origin,
                                 const RollbackConfig& config) {
  Json root;
  try {
    root = Json::parse(config_text);
  } catch (const Json::exception& error) {
    invalid("config_file '" + origin + "' is not valid JSON: " + shorten_for_message(error.what(), 240));
  }
  if (!root.is_object()) invalid("config_file '" + origin + "' must hold a JSON object");
  for (const auto& [layer, quantized] : config) {
    const auto entry = root.find(layer);
    if (entry == root.end() || !entry->is_object())
      invalid("config_file '" + origin + "' has no entry for quantized layer '" + layer + "'");
    (*entry)["quant_enable"] = quantized;
  }
  return write_json(root);
}

std::string ranking_json(const std::vector<LayerScore>& ranking) {
  Json out = Json::array();
  for (const LayerScore& score : ranking) out.push_back(Json::array({score.layer, score.similarity}));
  return write_json(out);
}

std::string ranking_table(const std::vector<LayerScore>& ranking, const RollbackConfig& final_config,
                          RollbackSearch::Outcome outcome) {
  size_t width = 5;  // "layer"
  for (const LayerScore& score : ranking) width = std::max(width, score.layer.size());
  const auto row = [&](const std::string& rank, const std::string& layer, const std::string& similarity,
                       const std::string& final_state) {
    std::string line = std::string(4 - std::min<size_t>(4, rank.size()), ' ') + rank + "  " + layer;
    line += std::string(width - layer.size() + 2, ' ') + similarity + "  " + final_state;
    return line + "\n";
  };
  std::string out = "Layers by quantization sensitivity (similarity 0.5 + 0.5 * cos(float, fake-quant output);\n"
                    "lowest first, the order in which the search rolls layers back)\n\n";
  out += row("rank", "layer", "similarity", "final");
  for (size_t i = 0; i < ranking.size(); ++i) {
    bool quantized = outcome != RollbackSearch::Outcome::kAllRolledBack;
    for (const auto& [layer, keep] : final_config)
      if (layer == ranking[i].layer) quantized = quantized && keep;
    char similarity[32];
    std::snprintf(similarity, sizeof similarity, "%10.8f", ranking[i].similarity);
    out += row(std::to_string(i + 1), ranking[i].layer, similarity, quantized ? "quantized" : "rolled back");
  }
  return out;
}

std::string history_json(const std::vector<SearchRecord>& history) {
  std::string out;
  for (const SearchRecord& record : history) {
    Json entry = Json::object();
    entry["roll_back_config"] = rollback_json(record.config);
    entry["metric_eval"] = Json::array({record.metric.satisfied, record.metric.loss});
    out += write_json(entry);
  }
  return out;
}

void write_trial_config(const std::string& path, const std::string& config_file, const RollbackConfig& config) {
  const std::string text = config_with_rollback(read_file(config_file, "config_file"), config_file, config);
  write_file_atomic(path, text, "auto calibration trial config");
}

void write_auto_calibration_results(const RollbackSearch& search, const std::string& config_file,
                                    const std::string& directory, const std::string& history_file,
                                    const std::vector<std::pair<std::string, std::string>>& copies) {
  if (search.searching()) fail(ErrorCode::kRuntime, "the auto calibration search has not finished");
  const std::string dir = directory.empty() || directory.back() == '/' ? directory : directory + "/";
  const bool all_rolled_back = search.outcome() == RollbackSearch::Outcome::kAllRolledBack;
  // Everything is built before anything is staged, so an error leaves no file changed.
  std::vector<std::pair<std::string, std::string>> files;
  files.emplace_back(dir + kRankingFile, ranking_json(search.ranking()));
  files.emplace_back(dir + kRankingTableFile, ranking_table(search.ranking(), search.final_config(), search.outcome()));
  if (!all_rolled_back)
    files.emplace_back(dir + kFinalConfigFile,
                       config_with_rollback(read_file(config_file, "config_file"), config_file, search.final_config()));
  files.emplace_back(history_file, history_json(search.history()));
  for (const auto& [source, target] : copies) files.emplace_back(target, read_file(source, "auto calibration output"));
  FileSet set;
  for (const auto& [path, data] : files) set.stage(path, data, "auto calibration output");
  set.commit();
}

}  // namespace amct
