#include "amct/calib/extreme_values.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace amct {
namespace {

constexpr size_t kChunk = 256;

// True when any value lies beyond the threshold; branch-free so it vectorizes,
// because almost every chunk has nothing to keep once the threshold settles.
template <bool kLargest>
bool any_beyond(const float* values, size_t n, float threshold) {
  int hit = 0;
  for (size_t i = 0; i < n; ++i) hit |= kLargest ? values[i] > threshold : values[i] < threshold;
  return hit != 0;
}

}  // namespace

ExtremeValues::ExtremeValues(int64_t k, bool largest)
    : k_(k), largest_(largest), threshold_(largest ? -INFINITY : INFINITY) {
  kept_.reserve(static_cast<size_t>(2 * k));
}

void ExtremeValues::observe(std::span<const float> values) {
  for (size_t start = 0; start < values.size(); start += kChunk) {
    const size_t n = std::min(kChunk, values.size() - start);
    const float* chunk = values.data() + start;
    const bool hit = largest_ ? any_beyond<true>(chunk, n, threshold_) : any_beyond<false>(chunk, n, threshold_);
    if (hit) observe_chunk(chunk, n);
  }
  seen_ += static_cast<int64_t>(values.size());
}

void ExtremeValues::observe(std::span<const float> values, std::span<const float> chunk_extremes, size_t chunk) {
  for (size_t c = 0, start = 0; start < values.size(); ++c, start += chunk) {
    const bool hit = largest_ ? chunk_extremes[c] > threshold_ : chunk_extremes[c] < threshold_;
    if (hit) observe_chunk(values.data() + start, std::min(chunk, values.size() - start));
  }
  seen_ += static_cast<int64_t>(values.size());
}

void ExtremeValues::observe_chunk(const float* values, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float x = values[i];
    if (largest_ ? x > threshold_ : x < threshold_) {
      kept_.push_back(x);
      if (kept_.size() == kept_.capacity()) compact();
    }
  }
}

void ExtremeValues::compact() {
  const auto kth = kept_.begin() + (k_ - 1);
  if (largest_)
    std::nth_element(kept_.begin(), kth, kept_.end(), std::greater<float>());
  else
    std::nth_element(kept_.begin(), kth, kept_.end());
  kept_.resize(static_cast<size_t>(k_));
  threshold_ = kept_.back();
}

bool ExtremeValues::holds(int64_t rank) const { return rank >= 1 && rank <= std::min(k_, seen_); }

float ExtremeValues::value_at(int64_t rank) const {
  std::vector<float> values(kept_);
  const auto nth = values.begin() + (rank - 1);
  if (largest_)
    std::nth_element(values.begin(), nth, values.end(), std::greater<float>());
  else
    std::nth_element(values.begin(), nth, values.end());
  return *nth;
}

std::vector<float> ExtremeValues::most_extreme() const {
  std::vector<float> values(kept_);
  const auto count = static_cast<size_t>(std::min(k_, seen_));
  // Selection then a sort of the selected: a heap-based partial sort of a
  // buffer this size costs several times more.
  auto by_extremity = [this](float a, float b) { return largest_ ? a > b : a < b; };
  if (count < values.size())
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(count), values.end(), by_extremity);
  values.resize(count);
  std::sort(values.begin(), values.end(), by_extremity);
  return values;
}

}  // namespace amct
