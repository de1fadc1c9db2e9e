#include "amct/calib/ifmr_bin_loss.h"

#include <algorithm>
#include <cmath>

#include "amct/calib/quant_math.h"

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

}  // namespace

IfmrBinLoss::IfmrBinLoss(MomentBins bins) : bins_(std::move(bins)) {
  const size_t size = bins_.counts.size();
  occupied_.resize(size);
  for (auto* prefix : {&n_, &nj_, &njj_, &f_, &jf_, &q_}) prefix->assign(size + 1, 0.0L);
  for (size_t j = 0; j < size; ++j) {
    const double count = bins_.counts[j];
    occupied_[j] = count > 0.0 && count != 1.0 && count != 2.0;
    const long double n = occupied_[j] ? count : 0.0;
    const long double f = occupied_[j] ? bins_.sums[j] : 0.0;
    const long double q = occupied_[j] ? bins_.squares[j] : 0.0;
    const auto at = static_cast<long double>(j);
    n_[j + 1] = n_[j] + n;
    nj_[j + 1] = nj_[j] + n * at;
    njj_[j + 1] = njj_[j] + n * at * at;
    f_[j + 1] = f_[j] + f;
    jf_[j + 1] = jf_[j] + at * f;
    q_[j + 1] = q_[j] + q;
  }
}

// Bin j's error in squared bin widths.
double IfmrBinLoss::bin_term(size_t j, double lo, double hi, float scale) const {
  const double width = bins_.width;
  const double count = bins_.counts[j];
  const double position_sum = bins_.sums[j];
  const double step = scale;
  const double scale_in_bins = step / width;
  const auto index = static_cast<double>(bins_.first_index + static_cast<int64_t>(j));
  const double start = index * width;
  const double first_step = round_half_even(std::clamp(start, lo, hi) / step);
  const double last_step = round_half_even(std::clamp(start + width, lo, hi) / step);
  if (first_step != last_step && scale_in_bins < kFineStep && start >= lo && start + width <= hi)
    return count * scale_in_bins * scale_in_bins / 12.0;
  // The step value rounded to float32 as the reference computes it, which
  // decides ties between candidates whose grids both contain the data.
  const double step_value = static_cast<float>(first_step) * scale;
  const double step_position = step_value / width - index;
  double term = count * step_position * step_position - 2.0 * step_position * position_sum + bins_.squares[j];
  for (double k = first_step; k < last_step; k += 1.0)
    term -= 2.0 * scale_in_bins * excess_above(count, position_sum, (k + 0.5) * scale_in_bins - index);
  return term;
}

double IfmrBinLoss::bin_by_bin(float lo, float hi, float scale) const {
  double loss = 0.0;
  for (size_t j = 0; j < occupied_.size(); ++j)
    if (occupied_[j]) loss += bin_term(j, lo, hi, scale);
  return loss * bins_.width * bins_.width;
}

double IfmrBinLoss::by_cells(float lo, float hi, float scale) const {
  const double width = bins_.width;
  const double step = scale;
  const auto bins = static_cast<int64_t>(occupied_.size());
  const double first_cell = round_half_even(static_cast<double>(lo) / step);
  const double last_cell = round_half_even(static_cast<double>(hi) / step);
  // Steps finer than a bin, or more boundaries than bins: nothing to gain.
  if (step / width < kFineStep || last_cell - first_cell > static_cast<double>(bins) / 4)
    return bin_by_bin(lo, hi, scale);
  // The bins next to each boundary, and to the clip points, are summed one by
  // one; one bin either side absorbs any rounding in locating them.
  std::vector<int64_t> single;
  // lo, the boundaries and hi come in ascending order, so keeping only bins
  // past the last one kept leaves the list sorted and free of repeats.
  auto mark = [&](double value) {
    const auto at = static_cast<int64_t>(std::floor(value / width - static_cast<double>(bins_.first_index)));
    for (int64_t j = std::max<int64_t>(at - 1, 0); j <= std::min(at + 1, bins - 1); ++j)
      if (single.empty() || j > single.back()) single.push_back(j);
  };
  mark(lo);
  for (double k = first_cell; k < last_cell; k += 1.0) mark((k + 0.5) * step);
  mark(hi);
  single.push_back(bins);  // closes the last run
  long double loss = 0.0L;
  int64_t begin = 0;
  for (const int64_t next : single) {
    if (begin < next) {
      // Bins [begin, next) lie in one cell: their step is bin `begin`'s.
      const auto start = static_cast<double>(bins_.first_index + begin) * width;
      const double cell = round_half_even(std::clamp(start, static_cast<double>(lo), static_cast<double>(hi)) / step);
      const double step_value = static_cast<float>(cell) * scale;
      const long double p = static_cast<long double>(step_value / width) - static_cast<long double>(bins_.first_index);
      const auto a = static_cast<size_t>(begin);
      const auto b = static_cast<size_t>(next);
      // Σ n(p - j)² - 2(p - j)F + Q over the run.
      loss += p * p * (n_[b] - n_[a]) - 2.0L * p * (nj_[b] - nj_[a]) + (njj_[b] - njj_[a]) -
              2.0L * p * (f_[b] - f_[a]) + 2.0L * (jf_[b] - jf_[a]) + (q_[b] - q_[a]);
    }
    if (next < bins && occupied_[static_cast<size_t>(next)])
      loss += bin_term(static_cast<size_t>(next), lo, hi, scale);
    begin = next + 1;
  }
  return static_cast<double>(loss) * width * width;
}

}  // namespace amct
