#include "amct/calib/hfmg.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "amct/calib/parallel_slices.h"
#include "amct/calib/value_range.h"
#include "amct/error.h"

namespace amct {
namespace {

struct HistcEdges {
  float lo;
  float hi;
};

// torch.histc picks its outer edges in double, widening an empty range, and
// bins against them as float32 (the dtype of its bin_edges tensor).
HistcEdges histc_edges(double lo, double hi) {
  if (lo == hi) {
    lo -= 1.0;
    hi += 1.0;
  }
  return {static_cast<float>(lo), static_cast<float>(hi)};
}

// Bin of each value, -1 for values torch skips (outside the edges, nan). The
// index arithmetic is torch's, in float32; kept apart from the scatter so it
// vectorizes.
__attribute__((target_clones("avx2", "default"))) void histc_bins(const float* values, size_t n, HistcEdges edges,
                                                                  int32_t bins, int32_t* out) {
  const auto bins_f = static_cast<float>(bins);
  const float width = edges.hi - edges.lo;
  for (size_t i = 0; i < n; ++i) {
    const float x = values[i];
    const bool inside = x >= edges.lo && x <= edges.hi;
    const auto pos = static_cast<int32_t>(inside ? (x - edges.lo) * bins_f / width : 0.0f);
    out[i] = inside ? std::min(pos, bins - 1) : -1;
  }
}

bool isclose(double a, double b) {
  return std::fabs(a - b) <= std::max(1e-9 * std::max(std::fabs(a), std::fabs(b)), static_cast<double>(kFltEpsilon));
}

// density·(e³ - a³)/3: the squared error of a uniform density over [a, e]
// measured from the centre of its destination bin.
float uniform_norm(float density, float a, float e) { return density * (e * e * e - a * a * a) / 3.0f; }

int64_t checked_bins(int64_t bins) {
  if (bins < 3) invalid("HFMG num_of_bins must be at least 3, got " + std::to_string(bins));
  return bins;
}

}  // namespace

void hfmg_histc(std::span<const float> values, double lo, double hi, std::span<int64_t> counts, size_t slices) {
  constexpr size_t kChunk = 1024;
  const HistcEdges edges = histc_edges(lo, hi);
  const auto bins = static_cast<int32_t>(counts.size());
  if (slices == 0) slices = default_slices(values.size());
  // Two histograms per slice: odd positions count into the second, so that
  // runs of one value (the zeros after a ReLU) do not serialize on one counter.
  std::vector<std::vector<int64_t>> parts(2 * slices, std::vector<int64_t>(counts.size(), 0));
  run_slices(values.size(), slices, 2, [&](size_t slice, size_t begin, size_t end) {
    int64_t* even = parts[2 * slice].data();
    int64_t* odd = parts[2 * slice + 1].data();
    int32_t positions[kChunk];
    for (size_t start = begin; start < end; start += kChunk) {
      const size_t n = std::min(kChunk, end - start);
      histc_bins(values.data() + start, n, edges, bins, positions);
      for (size_t i = 0; i + 1 < n; i += 2) {
        if (positions[i] >= 0) ++even[static_cast<size_t>(positions[i])];
        if (positions[i + 1] >= 0) ++odd[static_cast<size_t>(positions[i + 1])];
      }
      if (n % 2 == 1 && positions[n - 1] >= 0) ++even[static_cast<size_t>(positions[n - 1])];
    }
  });
  for (const auto& part : parts)
    for (size_t j = 0; j < counts.size(); ++j) counts[j] += part[j];
}

void hfmg_histc_reference(std::span<const float> values, double lo, double hi, std::span<int64_t> counts) {
  const HistcEdges edges = histc_edges(lo, hi);
  const auto bins = static_cast<int64_t>(counts.size());
  for (const float x : values) {
    if (!(x >= edges.lo && x <= edges.hi)) continue;
    auto pos = static_cast<int64_t>((x - edges.lo) * static_cast<float>(bins) / (edges.hi - edges.lo));
    if (pos == bins) pos -= 1;
    ++counts[static_cast<size_t>(pos)];
  }
}

void hfmg_redistribute(std::span<const int64_t> counts, double old_min, double old_max, double new_min, double new_max,
                       std::span<int64_t> out) {
  const auto bins = static_cast<int64_t>(counts.size());
  const double old_width = (old_max - old_min) / static_cast<double>(bins);
  const double new_width = (new_max - new_min) / static_cast<double>(bins);
  std::fill(out.begin(), out.end(), 0);
  auto new_bin = [&](double x) {
    return std::clamp(static_cast<int64_t>(std::floor((x - new_min) / new_width)), int64_t{0}, bins - 1);
  };
  for (int64_t i = 0; i < bins; ++i) {
    const int64_t count = counts[static_cast<size_t>(i)];
    if (count == 0) continue;
    const double lo = old_min + static_cast<double>(i) * old_width;
    const double hi = lo + old_width;
    const int64_t first = new_bin(lo);
    const int64_t last = new_bin(hi);
    if (first == last) {
      out[static_cast<size_t>(first)] += count;
      continue;
    }
    // The old bin straddles one new edge: split its count by overlap length,
    // truncating as Python's int() does.
    const double edge = new_min + static_cast<double>(first + 1) * new_width;
    const auto lower = static_cast<int64_t>(static_cast<double>(count) * (edge - lo) / (hi - lo));
    out[static_cast<size_t>(first)] += lower;
    out[static_cast<size_t>(last)] += count - lower;
  }
}

std::vector<HfmgCandidate> hfmg_search_range(std::span<const int64_t> counts) {
  const auto bins = static_cast<int64_t>(counts.size());
  int64_t total = 0;
  for (const int64_t c : counts) total += c;
  const int64_t step = std::max<int64_t>(static_cast<int64_t>(std::ceil(static_cast<double>(total) / 100000.0)), 1);
  const int64_t min_bins = (bins + 3) / 4;
  std::vector<HfmgCandidate> candidates;
  int64_t left = 0;
  int64_t right = bins - 1;
  while (right - left > min_bins) {
    // Walk in from each end until `step` values are passed, then trim the
    // end that needed more bins for them (the sparser tail).
    int64_t inner_left = left;
    int64_t passed = 0;
    while (passed < step && inner_left < right) passed += counts[static_cast<size_t>(inner_left++)];
    int64_t inner_right = right;
    passed = 0;
    while (passed < step && inner_right > inner_left) passed += counts[static_cast<size_t>(inner_right--)];
    if (right - inner_right >= inner_left - left)
      right = inner_right;
    else
      left = inner_left;
    candidates.push_back({left, right});
  }
  return candidates;
}

namespace {

// One candidate's destination grid, with the reference's float32 quantities.
struct DestinationGrid {
  float width;      // source bin width
  float dst_width;  // destination bin width
  float half;
  float last_dst;
  int64_t left;
  bool degenerate;  // destination bins narrower than float epsilon: loss 0
};

DestinationGrid destination_grid(double bin_width, HfmgCandidate candidate, int num_bits) {
  const int64_t dst_bins = int64_t{1} << num_bits;
  const double dst_width_d = bin_width * static_cast<double>(candidate.right - candidate.left + 1) /
                             static_cast<double>(dst_bins);
  DestinationGrid g{};
  g.degenerate = dst_width_d < static_cast<double>(kFltEpsilon);
  g.width = static_cast<float>(bin_width);
  g.dst_width = static_cast<float>(dst_width_d);
  g.half = g.dst_width / 2.0f;
  g.last_dst = static_cast<float>(dst_bins - 1);
  g.left = candidate.left;
  return g;
}

// Source bin i's share of the loss, in float32 as the reference computes it.
float source_bin_loss(const DestinationGrid& g, int64_t i, int64_t count) {
  const float density = static_cast<float>(count) / g.width;
  const float begin = static_cast<float>(i - g.left) * g.width;
  const float end = begin + g.width;
  const float dst_begin = std::clamp(std::floor(begin / g.dst_width), 0.0f, g.last_dst);
  const float dst_end = std::clamp(std::floor(end / g.dst_width), 0.0f, g.last_dst);
  const float center = dst_begin * g.dst_width + g.half;
  if (dst_begin == dst_end) return uniform_norm(density, begin - center, end - center);
  return uniform_norm(density, begin - center, g.half) +
         (dst_end - dst_begin - 1.0f) * uniform_norm(density, -g.half, g.half) +
         uniform_norm(density, -g.half, end - (dst_end * g.dst_width + g.half));
}

// A candidate whose fast loss is within this relative margin of the lowest
// fast loss is evaluated again with the reference. The fast loss is the exact
// integral (in double); the reference's float32 terms round begin - center,
// which cancels up to 12 bits for source bins 4096 widths from the candidate's
// start, so its sum can drift by up to ~3e-3 in the worst alignment of those
// errors (1e-4 measured). On Gaussian, ReLU, Laplace and uniform histograms
// of 4096 bins, 1 to 8 of up to 3071 candidates fall inside 1%.
constexpr double kRecheckMargin = 1e-2;

}  // namespace

float hfmg_candidate_loss(std::span<const int64_t> counts, double bin_width, HfmgCandidate candidate, int num_bits) {
  const DestinationGrid g = destination_grid(bin_width, candidate, num_bits);
  if (g.degenerate) return 0.0f;
  double loss = 0.0;
  for (size_t i = 0; i < counts.size(); ++i)
    if (counts[i] != 0) loss += source_bin_loss(g, static_cast<int64_t>(i), counts[i]);
  return static_cast<float>(loss);
}

HfmgMoments::HfmgMoments(std::span<const int64_t> counts)
    : counts_(counts), zeroth_(counts.size() + 1, 0), first_(counts.size() + 1, 0.0), second_(counts.size() + 1, 0.0) {
  for (size_t i = 0; i < counts.size(); ++i) {
    const auto c = static_cast<double>(counts[i]);
    const auto at = static_cast<double>(i);
    zeroth_[i + 1] = zeroth_[i] + counts[i];
    first_[i + 1] = first_[i] + c * at;
    second_[i + 1] = second_[i] + c * at * at;
  }
}

double HfmgMoments::candidate_loss(double bin_width, HfmgCandidate candidate, int num_bits) const {
  const DestinationGrid g = destination_grid(bin_width, candidate, num_bits);
  if (g.degenerate) return 0.0;
  const auto bins = static_cast<int64_t>(counts_.size());
  const auto dst_bins = int64_t{1} << num_bits;
  const double w = g.width;
  const double dst_width = g.dst_width;
  const double half = dst_width / 2.0;
  // Positions in source-bin units: source bin i spans [i, i + 1), destination
  // bin j spans [left + j·ratio, left + (j + 1)·ratio), the outer two reaching
  // to infinity (the reference clamps to them).
  const double ratio = dst_width / w;
  const auto left = static_cast<double>(g.left);
  const auto last_bin = static_cast<double>(bins);
  // ∫ over [from, to] (source-bin units) of bin i's density times (x - centre)².
  const double third_over_w = 1.0 / (3.0 * w);
  auto partial = [&](int64_t i, double from, double to, double centre) {
    const auto count = static_cast<double>(counts_[static_cast<size_t>(i)]);
    const double a = (from - left) * w - centre;
    const double e = (to - left) * w - centre;
    return count * third_over_w * (e * e * e - a * a * a);
  };
  double loss = 0.0;
  for (int64_t j = 0; j < dst_bins; ++j) {
    const double from = j == 0 ? -INFINITY : left + static_cast<double>(j) * ratio;
    const double to = j == dst_bins - 1 ? INFINITY : left + static_cast<double>(j + 1) * ratio;
    if (to <= 0.0 || from >= last_bin) continue;
    const double centre = static_cast<double>(j) * dst_width + half;
    // Whole source bins [whole_begin, whole_end): ceil and floor of the
    // clamped, non-negative ends by truncation (std::ceil/floor are library
    // calls without SSE4.1, and this is the loop's hot path).
    const double from_clamped = std::clamp(from, 0.0, last_bin);
    const double to_clamped = std::clamp(to, 0.0, last_bin);
    auto whole_begin = static_cast<int64_t>(from_clamped);
    if (static_cast<double>(whole_begin) < from_clamped) ++whole_begin;
    const auto whole_end = static_cast<int64_t>(to_clamped);
    if (whole_begin > whole_end) {  // inside one source bin
      loss += partial(whole_end, from, to, centre);
      continue;
    }
    if (from < static_cast<double>(whole_begin) && whole_begin > 0)
      loss += partial(whole_begin - 1, from, static_cast<double>(whole_begin), centre);
    if (to > static_cast<double>(whole_end) && whole_end < bins)
      loss += partial(whole_end, static_cast<double>(whole_end), to, centre);
    const auto b = static_cast<size_t>(whole_begin);
    const auto e = static_cast<size_t>(whole_end);
    const int64_t n0 = zeroth_[e] - zeroth_[b];
    if (n0 == 0) continue;
    // Σ count·(A² + A·w + w²/3) over the run, A = (i - left)·w - centre,
    // written with u = i - whole_begin as
    // Σ count·(u²w² + u(w² - 2ws) + s² - sw + w²/3), s = centre - (whole_begin - left)·w,
    // from moments about whole_begin.
    const double s1 = first_[e] - first_[b];
    const auto at = static_cast<double>(whole_begin);
    const auto m0 = static_cast<double>(n0);
    const double m1 = s1 - at * m0;
    const double m2 = (second_[e] - second_[b]) - 2.0 * at * s1 + at * at * m0;
    const double s = centre - (at - left) * w;
    loss += w * w * m2 + (w * w - 2.0 * w * s) * m1 + (s * s - s * w + w * w / 3.0) * m0;
  }
  return loss;
}

HfmgCandidate hfmg_best_candidate(std::span<const int64_t> counts, double bin_width,
                                  std::span<const HfmgCandidate> candidates, int num_bits) {
  const HfmgMoments moments(counts);
  std::vector<double> fast(candidates.size());
  double lowest = INFINITY;
  for (size_t k = 0; k < candidates.size(); ++k) {
    fast[k] = moments.candidate_loss(bin_width, candidates[k], num_bits);
    lowest = std::min(lowest, fast[k]);
  }
  // The reference decides among the candidates the fast loss cannot tell
  // apart from the lowest: first candidate of the lowest float32 loss.
  HfmgCandidate best = candidates.front();
  float best_loss = INFINITY;
  for (size_t k = 0; k < candidates.size(); ++k) {
    if (fast[k] > lowest * (1.0 + kRecheckMargin)) continue;
    const float loss = hfmg_candidate_loss(counts, bin_width, candidates[k], num_bits);
    if (loss < best_loss) {
      best_loss = loss;
      best = candidates[k];
    }
  }
  return best;
}

HfmgCandidate hfmg_best_candidate_reference(std::span<const int64_t> counts, double bin_width,
                                            std::span<const HfmgCandidate> candidates, int num_bits) {
  HfmgCandidate best = candidates.front();
  float best_loss = INFINITY;
  for (const HfmgCandidate& candidate : candidates) {
    const float loss = hfmg_candidate_loss(counts, bin_width, candidate, num_bits);
    if (loss < best_loss) {
      best_loss = loss;
      best = candidate;
    }
  }
  return best;
}

ScaleOffset hfmg_scale_offset(std::span<const int64_t> counts, float min, float max, bool asymmetric, int num_bits) {
  check_num_bits(num_bits);
  const auto bins = checked_bins(static_cast<int64_t>(counts.size()));
  const double bin_width = (static_cast<double>(max) - static_cast<double>(min)) / static_cast<double>(bins);
  const std::vector<HfmgCandidate> candidates = hfmg_search_range(counts);
  const HfmgCandidate best = hfmg_best_candidate(counts, bin_width, candidates, num_bits);
  const double clip_min = static_cast<double>(min) + static_cast<double>(best.left) * bin_width;
  const double clip_max = static_cast<double>(min) + static_cast<double>(best.right + 1) * bin_width;
  return calculate_scale_offset(static_cast<float>(clip_max), static_cast<float>(clip_min), asymmetric, num_bits);
}

HfmgCollector::HfmgCollector(const ActivationQuantParams& params) : params_(params) {
  check_num_bits(params.num_bits);
  const auto bins = static_cast<size_t>(checked_bins(params.num_of_bins));
  counts_.assign(bins, 0);
  batch_counts_.assign(bins, 0);
  regridded_.assign(bins, 0);
}

void HfmgCollector::observe(std::span<const float> batch) {
  if (batch.empty()) return;
  const ValueRange range = scan_value_range(batch);
  if (!range.finite) fail(ErrorCode::kRuntime, "activation contains inf or nan");
  if (empty_) {
    min_ = range.min;
    max_ = range.max;
    hfmg_histc(batch, min_, max_, counts_);
    empty_ = false;
    return;
  }
  const float new_min = std::min(min_, range.min);
  const float new_max = std::max(max_, range.max);
  std::fill(batch_counts_.begin(), batch_counts_.end(), 0);
  hfmg_histc(batch, new_min, new_max, batch_counts_);
  if (!isclose(new_min, min_) || !isclose(new_max, max_)) {
    hfmg_redistribute(counts_, min_, max_, new_min, new_max, regridded_);
    counts_.swap(regridded_);
  }
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += batch_counts_[i];
  min_ = new_min;
  max_ = new_max;
}

ScaleOffset HfmgCollector::finalize() const {
  if (empty_) fail(ErrorCode::kRuntime, "HFMG calibration observed no activation values");
  return hfmg_scale_offset(counts_, min_, max_, params_.asymmetric, params_.num_bits);
}

size_t HfmgCollector::state_bytes() const {
  return sizeof(*this) + (counts_.capacity() + batch_counts_.capacity() + regridded_.capacity()) * sizeof(int64_t);
}

}  // namespace amct
