// IFMR activation calibration (docs/amct-reference.md#ifmr): percentile min/max, then a search
// over clip ratios of the max for the lowest quantization MSE.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "amct/calib/activation_collector.h"
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

// k of "k-th largest" for a percentile over n values (step 1 of docs/amct-reference.md#ifmr).
int64_t ifmr_percentile_rank(int64_t n, double percentile);

// Steps 2-3 of docs/amct-reference.md#ifmr from the percentile max and min.
IfmrCandidates ifmr_candidates(float max_value, float min_value, const ActivationQuantParams& params);

// Step 5 of docs/amct-reference.md#ifmr: the record's scale/offset for the winning candidate.
ScaleOffset ifmr_result(const IfmrCandidates& candidates, size_t best, const ActivationQuantParams& params);

// IFMR over all calibration data at once, literally as the spec describes it
// (float32 arithmetic, exact percentiles). The reference for IfmrCollector.
ScaleOffset ifmr_exact(std::span<const float> all_data, const ActivationQuantParams& params);

// Streaming IFMR: exact min/max and extreme values for the percentiles, and a
// MomentHistogram from which each candidate's squared error is evaluated.
class IfmrCollector final : public ActivationCollector {
 public:
  // Ranks up to this many are selected exactly; beyond, the percentile is
  // read from the histogram, whose bin is then a negligible part of the range.
  static constexpr int64_t kMaxExactRank = int64_t{1} << 16;

  IfmrCollector(const ActivationQuantParams& params, int64_t batch_num);

  void observe(std::span<const float> batch) override;
  ScaleOffset finalize() const override;
  size_t state_bytes() const override;

  // Each candidate's summed squared error, up to one constant shared by all
  // candidates (so only differences and the argmin are meaningful).
  std::vector<double> candidate_losses(const IfmrCandidates& candidates) const;

 private:
  float upper_percentile(int64_t rank) const;
  float lower_percentile(int64_t rank) const;

  ActivationQuantParams params_;
  int64_t batch_num_;
  int64_t seen_ = 0;
  float min_ = 0.0f;
  float max_ = 0.0f;
  MomentHistogram histogram_;
  std::optional<ExtremeValues> largest_;
  std::optional<ExtremeValues> smallest_;
};

}  // namespace amct
