// Exact counts of the distinct values seen, kept while there are at most
// kCapacity of them. Data on a small lattice (pixels in steps of 1/255, the
// output of an earlier quantizer) is then known exactly; anything else gives
// up after its first few thousand values and frees the table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace amct {

class DistinctValues {
 public:
  static constexpr size_t kCapacity = 2048;

  DistinctValues();

  void observe(std::span<const float> values);

  // Whether every value seen is counted (no more than kCapacity distinct).
  bool complete() const { return complete_; }
  // (value, count) in ascending value order; -0 is counted as +0. Requires
  // complete().
  std::vector<std::pair<float, int64_t>> sorted() const;

  size_t state_bytes() const;

 private:
  void give_up();

  bool complete_ = true;
  size_t size_ = 0;
  // Open addressing on the float's bits; a NaN pattern marks a free slot
  // (NaNs are rejected before any value gets here).
  std::vector<uint32_t> keys_;
  std::vector<int64_t> counts_;
};

}  // namespace amct
