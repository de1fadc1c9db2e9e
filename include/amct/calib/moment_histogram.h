// A fixed-size histogram that keeps, per bin, the count and the sums of the
// values' positions inside the bin and of their squares, over a range that
// grows with the data.
//
// Bins lie on a dyadic grid: width w = 2^e, bin j covers
// [(first + j)·w, (first + j + 1)·w). Grids of widths 2^e and 2^(e+1) share
// their edges, so when a batch falls outside the window the window is re-centred
// and, if needed, widened by merging bins, and every value stays in the bin it
// would have been counted in had the wider grid been used from the start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace amct {

class MomentHistogram {
 public:
  static constexpr int64_t kBins = 16384;

  MomentHistogram();

  // Adds a batch whose smallest and largest values are `min` and `max`.
  // Large batches are binned in `slices` parts at once (0: default_slices()),
  // whose integer accumulators merge into exactly the one-part result.
  void add(std::span<const float> values, float min, float max, size_t slices = 0);
  // add() with the plain per-element loop and unquantized in-bin positions,
  // the test reference for add()'s binning kernel.
  void add_reference(std::span<const float> values, float min, float max);

  double bin_width() const;
  // Grid index of bin 0: bin j starts at (first_index() + j)·bin_width().
  int64_t first_index() const { return first_; }
  const std::vector<double>& counts() const { return counts_; }
  // Per bin, the sum over its values of x/w - floor(x/w), each in [0, 1).
  const std::vector<double>& position_sums() const { return position_sums_; }
  // Per bin, the sum of the squared positions.
  const std::vector<double>& square_sums() const { return square_sums_; }
  // The bin a value falls in and its unquantized position in it, as
  // add_reference() counts it (the value must lie in the covered range).
  std::pair<int64_t, double> locate(float x) const;

  size_t state_bytes() const;

 private:
  void cover(float min, float max);
  void regrid(int exponent, int64_t first);

  bool empty_ = true;
  int exponent_ = 0;
  int64_t first_ = 0;
  float min_ = 0.0f;
  float max_ = 0.0f;
  std::vector<double> counts_;
  std::vector<double> position_sums_;
  std::vector<double> square_sums_;
};

}  // namespace amct
