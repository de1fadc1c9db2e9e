#include "amct/calib/moment_histogram.h"

#include <algorithm>
#include <cmath>

#include "amct/calib/parallel_slices.h"

namespace amct {
namespace {

// add() resolves each value's in-bin position u to 2^-16 of a bin and packs a
// value into one 64-bit increment: count in bits 40..63, u in bits 0..39; u²
// goes to a second accumulator. Integer sums are exact and order-free.
constexpr int kPositionBits = 16;
constexpr uint64_t kCountUnit = uint64_t{1} << 40;
constexpr uint64_t kPositionMask = kCountUnit - 1;
// Each packed field overflows past 2^24 values per bin; a segment feeds two
// accumulators, each at most 2^23 values (the u² sums stay below 2^55).
constexpr size_t kSegment = size_t{1} << 24;

// Bins finer than the spacing of float32 values near the largest magnitude
// resolve nothing; this bound also keeps grid indices below 2^25, so they and
// the scaled positions are exact in double.
int finest_exponent(double abs_max) {
  constexpr int kSubnormalExponent = -149;
  if (abs_max == 0.0) return kSubnormalExponent;
  return std::max(std::ilogb(abs_max) - 23, kSubnormalExponent);
}

double grid_index(float x, int exponent) { return std::floor(std::ldexp(static_cast<double>(x), -exponent)); }

struct Accumulator {
  std::vector<uint64_t> packed = std::vector<uint64_t>(MomentHistogram::kBins, 0);
  std::vector<uint64_t> squares = std::vector<uint64_t>(MomentHistogram::kBins, 0);
};

// Two accumulators, fed alternately, so that runs of equal values (the zeros
// after a ReLU) do not serialize on one memory location.
void bin_packed(const float* values, size_t n, double scale, double origin, Accumulator& even, Accumulator& odd) {
  auto add = [&](float x, Accumulator& acc) {
    const auto fixed = static_cast<int32_t>(static_cast<double>(x) * scale - origin);
    const auto bin = static_cast<size_t>(fixed >> kPositionBits);
    const auto position = static_cast<uint64_t>(fixed & ((1 << kPositionBits) - 1));
    acc.packed[bin] += kCountUnit + position;
    acc.squares[bin] += position * position;
  };
  size_t i = 0;
  for (; i + 1 < n; i += 2) {
    add(values[i], even);
    add(values[i + 1], odd);
  }
  if (i < n) add(values[i], even);
}

}  // namespace

MomentHistogram::MomentHistogram() : counts_(kBins, 0.0), position_sums_(kBins, 0.0), square_sums_(kBins, 0.0) {}

double MomentHistogram::bin_width() const { return std::ldexp(1.0, exponent_); }

size_t MomentHistogram::state_bytes() const {
  return sizeof(*this) + (counts_.capacity() + position_sums_.capacity() + square_sums_.capacity()) * sizeof(double);
}

void MomentHistogram::add(std::span<const float> values, float min, float max, size_t slices) {
  cover(min, max);
  const double scale = std::ldexp(1.0, kPositionBits - exponent_);
  const double origin = std::ldexp(static_cast<double>(first_), kPositionBits);
  const double position_unit = std::ldexp(1.0, -kPositionBits);
  const double square_unit = std::ldexp(1.0, -2 * kPositionBits);
  // Every value lies between the bins of min and max, so only those bins of
  // the accumulators are merged and cleared: a small activation does not pay
  // for the whole histogram.
  auto bin_of = [&](float x) {
    const auto fixed = static_cast<int32_t>(static_cast<double>(x) * scale - origin);
    return static_cast<size_t>(std::clamp<int64_t>(fixed >> kPositionBits, 0, kBins - 1));
  };
  const size_t first_bin = bin_of(min);
  const size_t end_bin = bin_of(max) + 1;
  for (size_t start = 0; start < values.size(); start += kSegment) {
    const size_t n = std::min(kSegment, values.size() - start);
    const float* segment = values.data() + start;
    const size_t parts = slices == 0 ? default_slices(n) : slices;
    // Each slice counts into the accumulators of the thread that runs it,
    // which stay zero between calls. Slices start at even offsets, so each
    // value keeps the parity it has in a one-part pass: the even (odd)
    // accumulators' integer sums are the one-part even (odd) sums, within
    // the same per-segment bounds, whatever the slicing.
    std::vector<Accumulator*> even(parts);
    std::vector<Accumulator*> odd(parts);
    run_slices(n, parts, 2, [&](size_t slice, size_t begin, size_t end) {
      thread_local Accumulator even_storage;
      thread_local Accumulator odd_storage;
      even[slice] = &even_storage;
      odd[slice] = &odd_storage;
      bin_packed(segment + begin, end - begin, scale, origin, even_storage, odd_storage);
    });
    for (std::vector<Accumulator*>* side : {&even, &odd}) {
      // A thread that ran several slices (a team smaller than asked for) holds them in one accumulator.
      std::sort(side->begin(), side->end());
      side->erase(std::unique(side->begin(), side->end()), side->end());
      for (size_t j = first_bin; j < end_bin; ++j) {
        uint64_t packed = 0;
        uint64_t squares = 0;
        for (Accumulator* acc : *side) {
          packed += acc->packed[j];
          squares += acc->squares[j];
          acc->packed[j] = 0;
          acc->squares[j] = 0;
        }
        if (packed == 0) continue;
        counts_[j] += static_cast<double>(packed >> 40);
        position_sums_[j] += static_cast<double>(packed & kPositionMask) * position_unit;
        square_sums_[j] += static_cast<double>(squares) * square_unit;
      }
    }
  }
}

void MomentHistogram::add_reference(std::span<const float> values, float min, float max) {
  cover(min, max);
  const double inv_width = std::ldexp(1.0, -exponent_);
  for (const float x : values) {
    const double position = static_cast<double>(x) * inv_width - static_cast<double>(first_);
    const double bin = std::floor(position);
    counts_[static_cast<size_t>(bin)] += 1.0;
    position_sums_[static_cast<size_t>(bin)] += position - bin;
    square_sums_[static_cast<size_t>(bin)] += (position - bin) * (position - bin);
  }
}

std::pair<int64_t, double> MomentHistogram::locate(float x) const {
  const double position = static_cast<double>(x) * std::ldexp(1.0, -exponent_) - static_cast<double>(first_);
  const double bin = std::floor(position);
  return {static_cast<int64_t>(bin), position - bin};
}

void MomentHistogram::cover(float min, float max) {
  const float lo = empty_ ? min : std::min(min, min_);
  const float hi = empty_ ? max : std::max(max, max_);
  min_ = lo;
  max_ = hi;
  if (!empty_ && grid_index(lo, exponent_) >= static_cast<double>(first_) &&
      grid_index(hi, exponent_) < static_cast<double>(first_ + kBins))
    return;
  int exponent = finest_exponent(std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi))));
  if (!empty_) exponent = std::max(exponent, exponent_);
  auto span = [&](int e) { return static_cast<int64_t>(grid_index(hi, e) - grid_index(lo, e)) + 1; };
  while (span(exponent) > kBins) ++exponent;
  // Centring leaves headroom on both sides, so a later batch that exceeds the
  // range a little costs a shift rather than a halving of the resolution.
  const int64_t first = static_cast<int64_t>(grid_index(lo, exponent)) - (kBins - span(exponent)) / 2;
  if (empty_) {
    exponent_ = exponent;
    first_ = first;
    empty_ = false;
  } else {
    regrid(exponent, first);
  }
}

void MomentHistogram::regrid(int exponent, int64_t first) {
  const int shift = exponent - exponent_;
  std::vector<double> counts(kBins, 0.0);
  std::vector<double> sums(kBins, 0.0);
  std::vector<double> squares(kBins, 0.0);
  for (int64_t j = 0; j < kBins; ++j) {
    if (counts_[j] == 0.0) continue;
    const auto index = static_cast<double>(first_ + j);
    const double coarse = std::floor(std::ldexp(index, -shift));
    // Old bins between the coarse bin's start and this one, in old widths.
    const double skipped = index - std::ldexp(coarse, shift);
    const auto target = static_cast<size_t>(static_cast<int64_t>(coarse) - first);
    // Positions f become (f + skipped)/2^shift.
    counts[target] += counts_[j];
    sums[target] += std::ldexp(position_sums_[j] + counts_[j] * skipped, -shift);
    squares[target] += std::ldexp(square_sums_[j] + skipped * (2.0 * position_sums_[j] + counts_[j] * skipped),
                                  -2 * shift);
  }
  counts_.swap(counts);
  position_sums_.swap(sums);
  square_sums_.swap(squares);
  exponent_ = exponent;
  first_ = first;
}

}  // namespace amct
