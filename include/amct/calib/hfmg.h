// HFMG activation calibration (docs/amct-reference.md#hfmg): a torch.histc histogram merged over
// batches, then a search over shrinking bin ranges for the lowest estimated
// quantization error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "amct/calib/activation_collector.h"
#include "amct/calib/quant_math.h"
#include "amct/config.h"

namespace amct {

// Adds torch.histc(values, bins=counts.size(), min=lo, max=hi) to counts, with
// torch's CPU float32 arithmetic: values equal to hi go to the last bin, and
// lo == hi widens the range to [lo - 1, hi + 1]. Values must lie in [lo, hi].
// Large batches are counted in `slices` parts at once (0: default_slices()),
// whose integer counts sum to the same histogram.
void hfmg_histc(std::span<const float> values, double lo, double hi, std::span<int64_t> counts, size_t slices = 0);
// hfmg_histc one element at a time, the test reference for its kernel.
void hfmg_histc_reference(std::span<const float> values, double lo, double hi, std::span<int64_t> counts);

// Step 2 of docs/amct-reference.md#hfmg: redistributes a histogram over [old_min, old_max] into
// `out` (same bin count, overwritten) over [new_min, new_max] ⊇ the old range.
void hfmg_redistribute(std::span<const int64_t> counts, double old_min, double old_max, double new_min, double new_max,
                       std::span<int64_t> out);

struct HfmgCandidate {
  int64_t left = 0;   // first source bin kept
  int64_t right = 0;  // last source bin kept
};

// Step 3 of docs/amct-reference.md#hfmg: the candidate bin ranges, in search order.
std::vector<HfmgCandidate> hfmg_search_range(std::span<const int64_t> counts);

// Step 4 of docs/amct-reference.md#hfmg: the estimated quantization error of one candidate,
// bin by bin in float32 as the reference does. O(source bins).
float hfmg_candidate_loss(std::span<const int64_t> counts, double bin_width, HfmgCandidate candidate, int num_bits);

// The same loss in O(destination bins) per candidate, as the exact integral
// over the histogram's piecewise-uniform density of (x - centre of x's
// destination bin)²: the source bins that lie wholly inside one destination
// bin contribute a quadratic in their index, so prefix sums of count, i·count
// and i²·count give a whole run of them at once; the at most two source bins
// cut by a destination bin's edges are integrated piece by piece. In double,
// so it differs from hfmg_candidate_loss by that function's float32 rounding.
class HfmgMoments {
 public:
  // Keeps a view of counts, which must outlive this object.
  explicit HfmgMoments(std::span<const int64_t> counts);
  double candidate_loss(double bin_width, HfmgCandidate candidate, int num_bits) const;

 private:
  std::span<const int64_t> counts_;
  // Prefix sums over bins [0, i) of count (exact), i·count and i²·count
  // (exact below 2^53, rounded beyond: this loss only ranks candidates).
  std::vector<int64_t> zeroth_;
  std::vector<double> first_;
  std::vector<double> second_;
};

// The first candidate of the lowest hfmg_candidate_loss (steps 3-4). Ranks the
// candidates by HfmgMoments and rechecks with hfmg_candidate_loss only those
// whose fast loss is near the lowest, so it picks what the reference picks.
HfmgCandidate hfmg_best_candidate(std::span<const int64_t> counts, double bin_width,
                                  std::span<const HfmgCandidate> candidates, int num_bits);
// hfmg_candidate_loss on every candidate, the test reference for hfmg_best_candidate.
HfmgCandidate hfmg_best_candidate_reference(std::span<const int64_t> counts, double bin_width,
                                            std::span<const HfmgCandidate> candidates, int num_bits);

// Steps 3-5 of docs/amct-reference.md#hfmg for a histogram over [min, max].
ScaleOffset hfmg_scale_offset(std::span<const int64_t> counts, float min, float max, bool asymmetric, int num_bits);

class HfmgCollector final : public ActivationCollector {
 public:
  explicit HfmgCollector(const ActivationQuantParams& params);

  void observe(std::span<const float> batch) override;
  ScaleOffset finalize() const override;
  size_t state_bytes() const override;

 private:
  ActivationQuantParams params_;
  bool empty_ = true;
  float min_ = 0.0f;
  float max_ = 0.0f;
  std::vector<int64_t> counts_;
  // Working histograms for the next batch and the regridded old counts, kept so
  // observe() does not allocate.
  std::vector<int64_t> batch_counts_;
  std::vector<int64_t> regridded_;
};

}  // namespace amct
