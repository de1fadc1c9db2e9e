// AMCT's BinarySearch strategy and fine search (docs/amct-reference.md#accuracy_based_auto_calibration),
// as a state machine: Python evaluates each proposal and reports the metric.
#include <bit>

#include "amct/auto_calibration.h"
#include "amct/error.h"

namespace amct {

RollbackSearch::RollbackSearch(std::vector<LayerScore> scores, MetricEval global, MetricEval original)
    : original_(original) {
  if (scores.empty()) invalid("auto calibration needs at least one quantized layer to rank");
  RollbackConfig all_quantized;
  for (const LayerScore& score : scores) all_quantized.emplace_back(score.layer, true);
  ranking_ = rank_layers(std::move(scores));
  // The global calibration is the first record, in layer order, as AMCT writes it.
  history_.push_back({all_quantized, global});
  final_ = all_quantized;
  if (global.satisfied) {
    outcome_ = Outcome::kAllQuantized;
    return;
  }
  left_ = 0;
  right_ = static_cast<int>(ranking_.size()) - 1;
  mid_ = (left_ + right_) / 2;
  propose(mid_);
}

const RollbackConfig& RollbackSearch::proposal() const {
  if (!searching()) fail(ErrorCode::kRuntime, "the auto calibration search has ended; there is no proposal");
  return proposal_;
}

std::vector<std::string> RollbackSearch::rolled_back() const {
  std::vector<std::string> out;
  for (const auto& [layer, quantized] : proposal())
    if (!quantized) out.push_back(layer);
  return out;
}

int RollbackSearch::max_trials() const {
  // At most bit_width(n) bisection steps, plus the re-evaluation of the last
  // satisfied proposal when the final step fails.
  return std::bit_width(ranking_.size()) + 1;
}

RollbackConfig RollbackSearch::config_rolling_back(int last) const {
  RollbackConfig config;
  for (int i = 0; i < static_cast<int>(ranking_.size()); ++i) config.emplace_back(ranking_[i].layer, i > last);
  return config;
}

void RollbackSearch::propose(int last) {
  // A stopping proposal equal to the configuration just evaluated ends the
  // search: that model is already the one saved.
  if (stopping_ && last == evaluated_) {
    outcome_ = Outcome::kPartialRollback;
    return;
  }
  if (last == static_cast<int>(ranking_.size()) - 1) {
    // Rolling back every layer needs no trial: it is the float model.
    final_ = config_rolling_back(last);
    history_.push_back({final_, original_});
    outcome_ = Outcome::kAllRolledBack;
    return;
  }
  proposed_ = last;
  proposal_ = config_rolling_back(last);
}

void RollbackSearch::report(MetricEval metric) {
  if (!searching()) fail(ErrorCode::kRuntime, "the auto calibration search has ended; no trial is expected");
  ++trials_;
  history_.push_back({proposal_, metric});
  final_ = proposal_;
  evaluated_ = proposed_;
  if (stopping_) {
    outcome_ = Outcome::kPartialRollback;
    return;
  }
  advance(metric.satisfied);
}

void RollbackSearch::advance(bool satisfied) {
  if (satisfied) {
    last_satisfied_ = proposed_;
    right_ = mid_ - 1;
  } else {
    left_ = mid_ + 1;
  }
  mid_ = (left_ + right_) / 2;  // truncates toward zero, as AMCT's int() does for -1 / 2
  if (left_ > right_) {
    stopping_ = true;
    // A failed last step falls back to the last satisfied proposal. One
    // exists: only the never-evaluated all-rolled-back proposal could fail
    // with right_ still at the end of the ranking.
    propose(satisfied ? proposed_ : last_satisfied_);
    return;
  }
  propose(mid_);
}

}  // namespace amct
