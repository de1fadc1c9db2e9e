#include "amct/calib/ifmr.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "amct/calib/batch_scan.h"
#include "amct/error.h"

namespace amct {
namespace {

// Below this step-to-bin ratio a bin inside the clip range holds several
// cells, and the s²/12 average beats the per-boundary estimates.
constexpr double kFineStep = 1.0;

// Sum over a bin's values of max(f - phi, 0), f being the in-bin position in
// [0, 1). Only the count and the position sum are known, so the values are
// modelled by the linear density on [0, 1) with that count and mean (its slope
// limited to keep the density non-negative).
double excess_above(double count, double position_sum, double phi) {
  phi = std::clamp(phi, 0.0, 1.0);
  const double slope = std::clamp(12.0 * (position_sum / count - 0.5), -2.0, 2.0);
  const double rest = 1.0 - phi;
  return count * (rest * rest / 2.0 + slope * ((phi - 0.5) * rest * rest / 2.0 + rest * rest * rest / 3.0));
}

// A chunk of 256 values (1 KiB) is read again by ExtremeValues only when it
// holds a value beyond the kept threshold, which after the first batches is rare.
constexpr size_t kScanChunk = 256;

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

// The rank-th value counted from the top (or bottom) of exact value counts.
float counted_rank_value(const std::vector<std::pair<float, int64_t>>& counted, int64_t rank, bool from_top) {
  int64_t before = 0;
  for (size_t step = 0; step < counted.size(); ++step) {
    const auto& [value, count] = counted[from_top ? counted.size() - 1 - step : step];
    before += count;
    if (before >= rank) return value;
  }
  return from_top ? counted.front().first : counted.back().first;
}

// The histogram with the given exactly known values and the exact zeros taken
// out. add() truncates positions to 2^-16 of a bin and locate() does not, so
// the sums are clamped to what the remaining count allows.
struct Residual {
  std::vector<double> counts;
  std::vector<double> sums;
  std::vector<double> squares;
};

Residual residual_histogram(const MomentHistogram& histogram, std::span<const float> known, int64_t zeros) {
  Residual r{histogram.counts(), histogram.position_sums(), histogram.square_sums()};
  for (const float x : known) {
    if (x == 0.0f) continue;
    const auto [bin, position] = histogram.locate(x);
    const auto j = static_cast<size_t>(bin);
    r.counts[j] -= 1.0;
    r.sums[j] -= position;
    r.squares[j] -= position * position;
  }
  if (zeros > 0) r.counts[static_cast<size_t>(histogram.locate(0.0f).first)] -= static_cast<double>(zeros);
  for (size_t j = 0; j < r.counts.size(); ++j) {
    if (r.counts[j] <= 0.0) {
      r.counts[j] = r.sums[j] = r.squares[j] = 0.0;
      continue;
    }
    r.sums[j] = std::clamp(r.sums[j], 0.0, r.counts[j]);
    r.squares[j] = std::clamp(r.squares[j], r.sums[j] * r.sums[j] / r.counts[j], r.sums[j]);
  }
  return r;
}

}  // namespace

IfmrCollector::IfmrCollector(const ActivationQuantParams& params, int64_t batch_num)
    : params_(params), batch_num_(batch_num) {
  check_ifmr_params(params);
  if (batch_num < 1) invalid("batch_num must be at least 1, got " + std::to_string(batch_num));
}

void IfmrCollector::observe(std::span<const float> batch) {
  if (batch.empty()) return;
  // Per calling thread, not per collector: the chunk extremes are needed only
  // during this call, and a layer's worth of them would add to every
  // collector's state.
  thread_local BatchScan scan;
  scan_batch(batch, kScanChunk, scan);
  const ValueRange& range = scan.range;
  if (!range.finite) fail(ErrorCode::kRuntime, "activation contains inf or nan");
  if (seen_ == 0) {
    // The percentile ranks depend on the total count, known only as
    // batch_num times the first batch's size; the buffers are sized once here.
    const int64_t expected = batch_num_ * static_cast<int64_t>(batch.size());
    auto kept = [&](double percentile) {
      const int64_t rank = ifmr_percentile_rank(expected, percentile);
      return rank <= kMaxExactRank ? std::max(rank, kTailValues) : kTailValues;
    };
    largest_.emplace(kept(params_.max_percentile), /*largest=*/true);
    smallest_.emplace(kept(params_.min_percentile), /*largest=*/false);
  }
  min_ = seen_ == 0 ? range.min : std::min(min_, range.min);
  max_ = seen_ == 0 ? range.max : std::max(max_, range.max);
  histogram_.add(batch, range.min, range.max);
  distinct_.observe(batch);
  largest_->observe(batch, scan.chunk_max, kScanChunk);
  smallest_->observe(batch, scan.chunk_min, kScanChunk);
  zeros_ += scan.zeros;
  seen_ += static_cast<int64_t>(batch.size());
}

float IfmrCollector::upper_percentile(int64_t rank) const {
  if (rank == 1) return max_;
  if (distinct_.complete()) return counted_rank_value(distinct_.sorted(), rank, /*from_top=*/true);
  if (largest_->holds(rank)) return largest_->value_at(rank);
  return std::clamp(histogram_rank_value(histogram_, rank, /*from_top=*/true), min_, max_);
}

float IfmrCollector::lower_percentile(int64_t rank) const {
  if (rank == 1) return min_;
  if (distinct_.complete()) return counted_rank_value(distinct_.sorted(), rank, /*from_top=*/false);
  if (smallest_->holds(rank)) return smallest_->value_at(rank);
  return std::clamp(histogram_rank_value(histogram_, rank, /*from_top=*/false), min_, max_);
}

ScaleOffset IfmrCollector::finalize() const {
  if (seen_ == 0) fail(ErrorCode::kRuntime, "IFMR calibration observed no activation values");
  const float max_value = upper_percentile(ifmr_percentile_rank(seen_, params_.max_percentile));
  const float min_value = lower_percentile(ifmr_percentile_rank(seen_, params_.min_percentile));
  const IfmrCandidates candidates = ifmr_candidates(max_value, min_value, params_);
  const std::vector<double> losses = candidate_losses(candidates);
  // As ifmr_exact: the mean in float32, first argmin, so that candidates the
  // reference cannot tell apart resolve the same way.
  size_t best = 0;
  float best_loss = INFINITY;
  for (size_t i = 0; i < losses.size(); ++i) {
    const auto loss = static_cast<float>(losses[i] / static_cast<double>(seen_));
    if (loss < best_loss) {
      best_loss = loss;
      best = i;
    }
  }
  return ifmr_result(candidates, best, params_);
}

std::vector<double> IfmrCollector::candidate_losses(const IfmrCandidates& candidates) const {
  if (!distinct_.complete()) return histogram_losses(candidates);
  std::vector<double> losses(candidates.scales.size(), 0.0);
  for (const auto& [value, count] : distinct_.sorted())
    for (size_t i = 0; i < losses.size(); ++i)
      losses[i] += static_cast<double>(count) *
                   ifmr_squared_error(value, candidates.clip_min[i], candidates.clip_max[i], candidates.scales[i]);
  return losses;
}

// The kept extremes, the exact zeros (error 0 under every candidate) and the
// values of sparse bins are evaluated value by value, in float32 like the
// reference; the rest from the residual histogram. The quantizer q(x) = s·round(clamp(x, lo, hi)/s)
// is a step function with jumps at the cell boundaries (k + 1/2)·s inside
// (lo, hi). A bin that no boundary crosses has the exact error sum
// n·a² - 2a·F + Q (positions f, their sum F and square sum Q in bin widths, a
// the step value's position). Each boundary b crossing a bin moves the values
// above it to the next step, changing the error by -2s·Σ(x - b) over those
// values, which excess_above() estimates. When the step is much finer than the
// bin, those estimates are many large terms that nearly cancel; the values of
// a bin inside the clip range are then spread over many cells and each cell's
// error averages s²/12.
std::vector<double> IfmrCollector::histogram_losses(const IfmrCandidates& candidates) const {
  std::vector<float> known = largest_->most_extreme();
  if (seen_ > static_cast<int64_t>(known.size())) {
    // Where the two buffers together hold every value, the bottom one adds
    // only the values the top one lacks.
    std::vector<float> bottom = smallest_->most_extreme();
    bottom.resize(std::min(bottom.size(), static_cast<size_t>(seen_) - known.size()));
    known.insert(known.end(), bottom.begin(), bottom.end());
  }
  const Residual residual = residual_histogram(histogram_, known, zeros_);
  const double width = histogram_.bin_width();
  // The positions of a bin's one or two values follow from its count and
  // moments (f1 + f2 = F, f1² + f2² = Q), so sparse bins are evaluated value
  // by value too; this keeps the errors of thinly spread data exact.
  std::vector<int64_t> occupied;
  for (int64_t j = 0; j < MomentHistogram::kBins; ++j) {
    const auto at = static_cast<size_t>(j);
    const double count = residual.counts[at];
    const auto start = static_cast<double>(histogram_.first_index() + j);
    if (count == 1.0) {
      known.push_back(static_cast<float>((start + residual.sums[at]) * width));
    } else if (count == 2.0) {
      const double sum = residual.sums[at];
      const double spread = std::sqrt(std::max(2.0 * residual.squares[at] - sum * sum, 0.0));
      known.push_back(static_cast<float>((start + (sum - spread) / 2.0) * width));
      known.push_back(static_cast<float>((start + (sum + spread) / 2.0) * width));
    } else if (count > 0.0) {
      occupied.push_back(j);
    }
  }

  std::vector<double> losses;
  for (size_t i = 0; i < candidates.scales.size(); ++i) {
    const float lo = candidates.clip_min[i];
    const float hi = candidates.clip_max[i];
    double known_loss = 0.0;
    for (const float x : known) known_loss += ifmr_squared_error(x, lo, hi, candidates.scales[i]);
    const double lo_value = lo;
    const double hi_value = hi;
    const double scale = candidates.scales[i];
    const double scale_in_bins = scale / width;
    double loss = 0.0;
    for (const int64_t j : occupied) {
      const double count = residual.counts[static_cast<size_t>(j)];
      const double position_sum = residual.sums[static_cast<size_t>(j)];
      const auto index = static_cast<double>(histogram_.first_index() + j);
      const double start = index * width;
      const double first_step = round_half_even(std::clamp(start, lo_value, hi_value) / scale);
      const double last_step = round_half_even(std::clamp(start + width, lo_value, hi_value) / scale);
      if (first_step != last_step && scale_in_bins < kFineStep && start >= lo && start + width <= hi) {
        loss += count * scale_in_bins * scale_in_bins / 12.0;
        continue;
      }
      // The step value rounded to float32 as the reference computes it, which
      // decides ties between candidates whose grids both contain the data.
      const double step_value = static_cast<float>(first_step) * candidates.scales[i];
      const double step_position = step_value / width - index;
      loss += count * step_position * step_position - 2.0 * step_position * position_sum +
              residual.squares[static_cast<size_t>(j)];
      for (double k = first_step; k < last_step; k += 1.0)
        loss -= 2.0 * scale_in_bins * excess_above(count, position_sum, (k + 0.5) * scale_in_bins - index);
    }
    losses.push_back(known_loss + loss * width * width);
  }
  return losses;
}

size_t IfmrCollector::state_bytes() const {
  size_t bytes = sizeof(*this) - sizeof(histogram_) - sizeof(distinct_) + histogram_.state_bytes() +
                 distinct_.state_bytes();
  if (largest_) bytes += largest_->state_bytes();
  if (smallest_) bytes += smallest_->state_bytes();
  return bytes;
}

}  // namespace amct
