#include "amct/calib/ifmr.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "amct/calib/value_range.h"
#include "amct/error.h"

namespace amct {
namespace {

// Sum over a bin's values of max(f - phi, 0), f being the in-bin position in
// [0, 1). Only the count and the position sum are known, so the values are
// modelled by the linear density on [0, 1) with that count and mean (its slope
// limited to keep the density non-negative); a lone value is known exactly.
double excess_above(double count, double position_sum, double phi) {
  phi = std::clamp(phi, 0.0, 1.0);
  if (count == 1.0) return std::max(position_sum - phi, 0.0);
  const double slope = std::clamp(12.0 * (position_sum / count - 0.5), -2.0, 2.0);
  const double rest = 1.0 - phi;
  return count * (rest * rest / 2.0 + slope * ((phi - 0.5) * rest * rest / 2.0 + rest * rest * rest / 3.0));
}

// The rank-th value counted from the top (or bottom) of the histogram,
// assuming the values of the bin it falls in are evenly spread.
float histogram_rank_value(const MomentHistogram& histogram, int64_t rank, bool from_top) {
  const std::vector<double>& counts = histogram.counts();
  const double width = histogram.bin_width();
  double before = 0.0;
  for (int64_t step = 0; step < MomentHistogram::kBins; ++step) {
    const int64_t j = from_top ? MomentHistogram::kBins - 1 - step : step;
    const double count = counts[static_cast<size_t>(j)];
    if (before + count < static_cast<double>(rank)) {
      before += count;
      continue;
    }
    const double inside = (static_cast<double>(rank) - before - 0.5) / count;
    const double start = static_cast<double>(histogram.first_index() + j) * width;
    return static_cast<float>(from_top ? start + (1.0 - inside) * width : start + inside * width);
  }
  return 0.0f;
}

}  // namespace

IfmrCollector::IfmrCollector(const ActivationQuantParams& params, int64_t batch_num)
    : params_(params), batch_num_(batch_num) {
  check_ifmr_params(params);
  if (batch_num < 1) invalid("batch_num must be at least 1, got " + std::to_string(batch_num));
}

void IfmrCollector::observe(std::span<const float> batch) {
  if (batch.empty()) return;
  const ValueRange range = scan_value_range(batch);
  if (!range.finite) fail(ErrorCode::kRuntime, "activation contains inf or nan");
  if (seen_ == 0) {
    // The percentile ranks depend on the total count, known only as
    // batch_num times the first batch's size; the buffers are sized once here.
    const int64_t expected = batch_num_ * static_cast<int64_t>(batch.size());
    const int64_t upper = ifmr_percentile_rank(expected, params_.max_percentile);
    const int64_t lower = ifmr_percentile_rank(expected, params_.min_percentile);
    if (upper > 1 && upper <= kMaxExactRank) largest_.emplace(upper, /*largest=*/true);
    if (lower > 1 && lower <= kMaxExactRank) smallest_.emplace(lower, /*largest=*/false);
  }
  min_ = seen_ == 0 ? range.min : std::min(min_, range.min);
  max_ = seen_ == 0 ? range.max : std::max(max_, range.max);
  histogram_.add(batch, range.min, range.max);
  if (largest_) largest_->observe(batch);
  if (smallest_) smallest_->observe(batch);
  seen_ += static_cast<int64_t>(batch.size());
}

float IfmrCollector::upper_percentile(int64_t rank) const {
  if (rank == 1) return max_;
  if (largest_ && largest_->holds(rank)) return largest_->value_at(rank);
  return std::clamp(histogram_rank_value(histogram_, rank, /*from_top=*/true), min_, max_);
}

float IfmrCollector::lower_percentile(int64_t rank) const {
  if (rank == 1) return min_;
  if (smallest_ && smallest_->holds(rank)) return smallest_->value_at(rank);
  return std::clamp(histogram_rank_value(histogram_, rank, /*from_top=*/false), min_, max_);
}

ScaleOffset IfmrCollector::finalize() const {
  if (seen_ == 0) fail(ErrorCode::kRuntime, "IFMR calibration observed no activation values");
  const float max_value = upper_percentile(ifmr_percentile_rank(seen_, params_.max_percentile));
  const float min_value = lower_percentile(ifmr_percentile_rank(seen_, params_.min_percentile));
  const IfmrCandidates candidates = ifmr_candidates(max_value, min_value, params_);
  const std::vector<double> losses = candidate_losses(candidates);
  const auto best = static_cast<size_t>(std::min_element(losses.begin(), losses.end()) - losses.begin());
  return ifmr_result(candidates, best, params_);
}

// The quantizer q(x) = s·round(clamp(x, lo, hi)/s) is a step function with
// jumps at the cell boundaries (k + 1/2)·s inside (lo, hi). A bin that no
// boundary crosses has the exact error sum n·a² - 2a·F + Σf² (positions f and
// their sum F in bin widths, a the step value's position); Σf² is the same for
// every candidate and is left out. Each boundary b crossing a bin moves the
// values above it to the next step, changing the error by -2s·Σ(x - b) over
// those values, which excess_above() estimates.
std::vector<double> IfmrCollector::candidate_losses(const IfmrCandidates& candidates) const {
  const std::vector<double>& counts = histogram_.counts();
  const std::vector<double>& sums = histogram_.position_sums();
  const double width = histogram_.bin_width();
  std::vector<int64_t> occupied;
  for (int64_t j = 0; j < MomentHistogram::kBins; ++j)
    if (counts[static_cast<size_t>(j)] > 0.0) occupied.push_back(j);

  std::vector<double> losses;
  for (size_t i = 0; i < candidates.scales.size(); ++i) {
    const double scale = candidates.scales[i];
    const double lo = candidates.clip_min[i];
    const double hi = candidates.clip_max[i];
    const double scale_in_bins = scale / width;
    double loss = 0.0;
    for (const int64_t j : occupied) {
      const double count = counts[static_cast<size_t>(j)];
      const double position_sum = sums[static_cast<size_t>(j)];
      const auto index = static_cast<double>(histogram_.first_index() + j);
      const double start = index * width;
      const double first_step = round_half_even(std::clamp(start, lo, hi) / scale);
      const double last_step = round_half_even(std::clamp(start + width, lo, hi) / scale);
      // The step value rounded to float32 as the reference computes it, which
      // decides ties between candidates whose grids both contain the data.
      const double step_value = static_cast<float>(first_step) * candidates.scales[i];
      const double step_position = step_value / width - index;
      loss += count * step_position * step_position - 2.0 * step_position * position_sum;
      for (double k = first_step; k < last_step; k += 1.0)
        loss -= 2.0 * scale_in_bins * excess_above(count, position_sum, (k + 0.5) * scale_in_bins - index);
    }
    losses.push_back(loss);
  }
  return losses;
}

size_t IfmrCollector::state_bytes() const {
  size_t bytes = sizeof(*this) - sizeof(histogram_) + histogram_.state_bytes();
  if (largest_) bytes += largest_->state_bytes();
  if (smallest_) bytes += smallest_->state_bytes();
  return bytes;
}

}  // namespace amct
