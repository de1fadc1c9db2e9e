#include "amct/calib/ifmr.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "amct/calib/value_range.h"
#include "amct/error.h"
#include "amct/number_format.h"

namespace amct {

void check_ifmr_params(const ActivationQuantParams& params) {
  check_num_bits(params.num_bits);
  for (const double p : {params.max_percentile, params.min_percentile})
    if (!(p > 0.0 && p <= 1.0)) invalid("IFMR percentile must be in (0, 1], got " + std::to_string(p));
  if (!(params.search_range_start > 0.0 && params.search_range_start < params.search_range_end))
    invalid("IFMR search_range must satisfy 0 < start < end, got [" + std::to_string(params.search_range_start) +
            ", " + std::to_string(params.search_range_end) + "]");
  if (!(params.search_step > 0.0)) invalid("IFMR search_step must be positive, got " + std::to_string(params.search_step));
  ifmr_candidate_count(params);
}

int64_t ifmr_candidate_count(const ActivationQuantParams& params) {
  // torch.arange(start, end, step): the length in double.
  const double count = std::ceil((params.search_range_end - params.search_range_start) / params.search_step);
  // Written as "not inside" so that NaN and infinity are refused too.
  if (!(count >= 1.0 && count <= static_cast<double>(kMaxIfmrCandidates)))
    invalid("IFMR search_range [" + format_python_double(params.search_range_start) + ", " +
            format_python_double(params.search_range_end) + "] with search_step " +
            format_python_double(params.search_step) + " gives " +
            (!std::isfinite(count) ? std::string("unboundedly many")
             : count < 1e15        ? std::to_string(static_cast<int64_t>(count))
                                   : format_python_double(count)) +
            " candidates; expected 1 to " + std::to_string(kMaxIfmrCandidates));
  return static_cast<int64_t>(count);
}

int64_t ifmr_percentile_rank(int64_t n, double percentile) {
  if (1.0 - percentile < static_cast<double>(kFltEpsilon)) return 1;
  return n - static_cast<int64_t>(percentile * static_cast<double>(n));
}

IfmrCandidates ifmr_candidates(float max_value, float min_value, const ActivationQuantParams& params) {
  max_value = std::max(0.0f, max_value);
  min_value = std::min(0.0f, min_value);
  const int bits = params.num_bits;
  float range_max = max_value;
  auto levels = static_cast<float>((int64_t{1} << bits) - 1);
  if (!params.asymmetric) {
    range_max = std::max(std::fabs(max_value), std::fabs(min_value));
    levels = static_cast<float>(std::fabs(max_value) < std::fabs(min_value) ? -quant_min(bits) : quant_max(bits));
  }
  // torch.arange(start, end, step): values start + i*step.
  const int64_t count = ifmr_candidate_count(params);
  IfmrCandidates candidates;
  candidates.min_value = min_value;
  for (int64_t i = 0; i < count; ++i) {
    const auto ratio = static_cast<float>(params.search_range_start + static_cast<double>(i) * params.search_step);
    const float clip_max = ratio * range_max;
    const float scale = params.asymmetric ? (clip_max - min_value) / levels : clip_max / levels;
    candidates.clip_max.push_back(clip_max);
    candidates.clip_min.push_back(params.asymmetric ? min_value : -clip_max);
    candidates.scales.push_back(process_scale(scale));
  }
  return candidates;
}

ScaleOffset ifmr_result(const IfmrCandidates& candidates, size_t best, const ActivationQuantParams& params) {
  ScaleOffset result;
  result.scale = candidates.scales[best];
  if (params.asymmetric)
    result.offset = static_cast<int32_t>(-round_half_even(candidates.min_value / result.scale) +
                                         static_cast<float>(quant_min(params.num_bits)));
  return result;
}

ScaleOffset ifmr_exact(std::span<const float> all_data, const ActivationQuantParams& params) {
  check_ifmr_params(params);
  if (all_data.empty()) invalid("IFMR needs at least one activation value");
  if (!scan_value_range_reference(all_data).finite) fail(ErrorCode::kRuntime, "activation contains inf or nan");
  const auto n = static_cast<int64_t>(all_data.size());

  std::vector<float> sorted(all_data.begin(), all_data.end());
  const auto kth_max = sorted.begin() + (ifmr_percentile_rank(n, params.max_percentile) - 1);
  std::nth_element(sorted.begin(), kth_max, sorted.end(), std::greater<float>());
  const float max_value = *kth_max;
  const auto kth_min = sorted.begin() + (ifmr_percentile_rank(n, params.min_percentile) - 1);
  std::nth_element(sorted.begin(), kth_min, sorted.end());
  const float min_value = *kth_min;

  const IfmrCandidates candidates = ifmr_candidates(max_value, min_value, params);
  size_t best = 0;
  float best_loss = INFINITY;
  for (size_t i = 0; i < candidates.scales.size(); ++i) {
    const float scale = candidates.scales[i];
    double sum = 0.0;
    for (const float x : all_data) sum += ifmr_squared_error(x, candidates.clip_min[i], candidates.clip_max[i], scale);
    const auto loss = static_cast<float>(sum / static_cast<double>(n));
    if (loss < best_loss) {
      best_loss = loss;
      best = i;
    }
  }
  return ifmr_result(candidates, best, params);
}

}  // namespace amct
