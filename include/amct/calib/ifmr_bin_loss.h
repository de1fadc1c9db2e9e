// The squared error of IFMR's candidate quantizers over the values of a
// histogram whose bins keep count, position sum and square sum
// (MomentHistogram, less the values IfmrCollector evaluates one by one).
//
// The quantizer q(x) = s·round(clamp(x, lo, hi)/s) is a step function with
// jumps at the cell boundaries (k + 1/2)·s inside (lo, hi). A bin that no
// boundary crosses has the exact error sum n·a² - 2a·F + Q (positions f, their
// sum F and square sum Q in bin widths, a the step value's position). Each
// boundary b crossing a bin moves the values above it to the next step,
// changing the error by -2s·Σ(x - b) over those values, estimated from the
// bin's count and mean. When the step is finer than a bin, those estimates
// are many large terms that nearly cancel; the values of a bin inside the
// clip range are then spread over many cells and each cell's error averages
// s²/12.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace amct {

struct MomentBins {
  // Grid index of bin 0 and the bin width: bin j covers
  // [(first_index + j)·width, (first_index + j + 1)·width).
  int64_t first_index = 0;
  double width = 1.0;
  std::vector<double> counts;
  std::vector<double> sums;     // of the positions in the bin, in [0, 1) each
  std::vector<double> squares;  // of the squared positions
};

class IfmrBinLoss {
 public:
  // Bins of count 0, 1 or 2 are left out: IfmrCollector evaluates the one or
  // two values of a sparse bin itself.
  explicit IfmrBinLoss(MomentBins bins);

  // The error of candidate (lo, hi, scale), summed bin by bin (in squared
  // value units): the reference the fast sum is checked against.
  double bin_by_bin(float lo, float hi, float scale) const;
  // The same sum with the runs of bins between two cell boundaries added at
  // once from prefix sums of their moments: O(cells) rather than O(bins).
  // It differs from bin_by_bin() by rounding only, so it ranks candidates;
  // IfmrCollector decides between near-equal ones with bin_by_bin().
  double by_cells(float lo, float hi, float scale) const;

 private:
  double bin_term(size_t j, double lo, double hi, float scale) const;

  MomentBins bins_;
  std::vector<bool> occupied_;
  // Prefix sums over occupied bins j of n, n·j, n·j², F, j·F and Q: a run's
  // sums are differences of large prefixes, hence the long double.
  std::vector<long double> n_, nj_, njj_, f_, jf_, q_;
};

}  // namespace amct
