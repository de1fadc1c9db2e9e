// IFMR activation calibration (docs/amct-reference.md#ifmr): percentile min/max, then a search
// over clip ratios of the max for the lowest quantization MSE.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "amct/calib/activation_collector.h"
#include "amct/calib/distinct_values.h"
#include "amct/calib/extreme_values.h"
#include "amct/calib/moment_histogram.h"
#include "amct/calib/quant_math.h"
#include "amct/config.h"

namespace amct {

// The searched candidates: value i clips to [clip_min[i], clip_max[i]] and
// rounds on the grid scales[i]; min_value is the percentile min (<= 0).
struct IfmrCandidates {
  float min_value = 0.0f;
  std::vector<float> clip_min;
  std::vector<float> clip_max;
  std::vector<float> scales;
};

// Throws kInvalidArgument for parameters the search cannot run with.
void check_ifmr_params(const ActivationQuantParams& params);

// The search tries ceil((search_range[1] - search_range[0]) / search_step)
// clip ratios, each costing a pass over the collected statistics; more than
// this (a step of 1e-5 over a range of width 1) is a mistyped range or step,
// not a finer search.
constexpr int64_t kMaxIfmrCandidates = 100000;

// The number of candidates of `params` (start < end, step > 0); throws
// kInvalidArgument when it is not finite or above kMaxIfmrCandidates.
int64_t ifmr_candidate_count(const ActivationQuantParams& params);

// k of "k-th largest" for a percentile over n values (step 1 of docs/amct-reference.md#ifmr).
int64_t ifmr_percentile_rank(int64_t n, double percentile);

// Steps 2-3 of docs/amct-reference.md#ifmr from the percentile max and min.
IfmrCandidates ifmr_candidates(float max_value, float min_value, const ActivationQuantParams& params);

// Step 5 of docs/amct-reference.md#ifmr: the record's scale/offset for the winning candidate.
ScaleOffset ifmr_result(const IfmrCandidates& candidates, size_t best, const ActivationQuantParams& params);

// The squared error of one value under a candidate (step 4 of spec 6.2), in
// float32 like the reference; lo/hi/scale are the candidate's clip and step.
inline double ifmr_squared_error(float x, float lo, float hi, float scale) {
  const float error = round_half_even(std::clamp(x, lo, hi) / scale) * scale - x;
  return static_cast<double>(error * error);
}

// IFMR over all calibration data at once, literally as the spec describes it
// (float32 arithmetic, exact percentiles). The reference for IfmrCollector.
ScaleOffset ifmr_exact(std::span<const float> all_data, const ActivationQuantParams& params);

// Streaming IFMR: exact min/max, the most extreme values (for the
// percentiles and the clipped tails), the count of exact zeros, the distinct
// values while they are few, and a MomentHistogram from which the squared
// error of the remaining values is evaluated per candidate.
class IfmrCollector final : public ActivationCollector {
 public:
  // Ranks up to this many are selected exactly; beyond, the percentile is
  // read from the histogram, whose bin is then a negligible part of the range.
  static constexpr int64_t kMaxExactRank = int64_t{1} << 16;
  // At least this many of the largest and of the smallest values are kept:
  // the candidates that compete clip only values among these, whose errors
  // are then exact.
  static constexpr int64_t kTailValues = 4096;

  IfmrCollector(const ActivationQuantParams& params, int64_t batch_num);

  void observe(std::span<const float> batch) override;
  ScaleOffset finalize() const override;
  size_t state_bytes() const override;

  // Each candidate's summed squared error over all values observed.
  std::vector<double> candidate_losses(const IfmrCandidates& candidates) const;

 private:
  float upper_percentile(int64_t rank) const;
  float lower_percentile(int64_t rank) const;
  std::vector<double> histogram_losses(const IfmrCandidates& candidates) const;

  ActivationQuantParams params_;
  int64_t batch_num_;
  int64_t seen_ = 0;
  int64_t zeros_ = 0;
  float min_ = 0.0f;
  float max_ = 0.0f;
  MomentHistogram histogram_;
  DistinctValues distinct_;
  std::optional<ExtremeValues> largest_;
  std::optional<ExtremeValues> smallest_;
};

}  // namespace amct
