#include "amct/calib/ifmr.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "amct/calib/batch_scan.h"
#include "amct/calib/ifmr_bin_loss.h"
#include "amct/error.h"

namespace amct {
namespace {

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
MomentBins residual_histogram(const MomentHistogram& histogram, std::span<const float> known, int64_t zeros) {
  MomentBins r{histogram.first_index(), histogram.bin_width(), histogram.counts(), histogram.position_sums(),
               histogram.square_sums()};
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

// ifmr_squared_error of each value, in float32 (the sum stays the caller's,
// in its order); vectorized where the CPU rounds in one instruction.
__attribute__((target_clones("avx2", "default"))) void squared_errors(const float* values, size_t n, float lo,
                                                                      float hi, float scale, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const float error = std::nearbyint(std::clamp(values[i], lo, hi) / scale) * scale - values[i];
    out[i] = error * error;
  }
}

// Candidates whose fast loss (IfmrBinLoss::by_cells) lies this close to the
// lowest are compared by their bin-by-bin loss, so that the choice is the one
// the bin-by-bin sums make: the two differ by rounding, orders of magnitude below.
constexpr double kRecheckMargin = 1e-6;

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
// reference; the rest from the residual histogram (IfmrBinLoss).
std::vector<double> IfmrCollector::histogram_losses(const IfmrCandidates& candidates) const {
  std::vector<float> known = largest_->most_extreme();
  if (seen_ > static_cast<int64_t>(known.size())) {
    // Where the two buffers together hold every value, the bottom one adds
    // only the values the top one lacks.
    std::vector<float> bottom = smallest_->most_extreme();
    bottom.resize(std::min(bottom.size(), static_cast<size_t>(seen_) - known.size()));
    known.insert(known.end(), bottom.begin(), bottom.end());
  }
  MomentBins residual = residual_histogram(histogram_, known, zeros_);
  const double width = residual.width;
  // The positions of a bin's one or two values follow from its count and
  // moments (f1 + f2 = F, f1² + f2² = Q), so sparse bins are evaluated value
  // by value too; this keeps the errors of thinly spread data exact.
  for (size_t j = 0; j < residual.counts.size(); ++j) {
    const double count = residual.counts[j];
    const auto start = static_cast<double>(residual.first_index + static_cast<int64_t>(j));
    if (count == 1.0) {
      known.push_back(static_cast<float>((start + residual.sums[j]) * width));
    } else if (count == 2.0) {
      const double sum = residual.sums[j];
      const double spread = std::sqrt(std::max(2.0 * residual.squares[j] - sum * sum, 0.0));
      known.push_back(static_cast<float>((start + (sum - spread) / 2.0) * width));
      known.push_back(static_cast<float>((start + (sum + spread) / 2.0) * width));
    }
  }
  const IfmrBinLoss bin_loss(std::move(residual));
  const size_t count = candidates.scales.size();
  std::vector<double> known_losses(count, 0.0);
  std::vector<double> losses(count);
  std::vector<float> errors(known.size());
  double lowest = INFINITY;
  for (size_t i = 0; i < count; ++i) {
    const float lo = candidates.clip_min[i];
    const float hi = candidates.clip_max[i];
    squared_errors(known.data(), known.size(), lo, hi, candidates.scales[i], errors.data());
    // Four running sums, not one: a single chain of additions would wait on
    // each one's latency over tens of thousands of values per candidate.
    double sums[4] = {0.0, 0.0, 0.0, 0.0};
    size_t v = 0;
    for (; v + 4 <= errors.size(); v += 4)
      for (size_t lane = 0; lane < 4; ++lane) sums[lane] += static_cast<double>(errors[v + lane]);
    for (; v < errors.size(); ++v) sums[0] += static_cast<double>(errors[v]);
    known_losses[i] = (sums[0] + sums[1]) + (sums[2] + sums[3]);
    losses[i] = known_losses[i] + bin_loss.by_cells(lo, hi, candidates.scales[i]);
    lowest = std::min(lowest, losses[i]);
  }
  // The absolute term covers a lowest loss of (nearly) zero.
  const double near = lowest * (1.0 + kRecheckMargin) + kRecheckMargin * 1e-3 * static_cast<double>(seen_) * width * width;
  for (size_t i = 0; i < count; ++i)
    if (losses[i] <= near)
      losses[i] = known_losses[i] + bin_loss.bin_by_bin(candidates.clip_min[i], candidates.clip_max[i],
                                                        candidates.scales[i]);
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
