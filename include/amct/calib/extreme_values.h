// Streaming selection of the k-th largest (or smallest) value: keeps the k most
// extreme values seen in a buffer of fixed capacity 2k, so the cost per batch is
// one comparison per element plus amortized O(1) work per kept candidate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace amct {

class ExtremeValues {
 public:
  // `largest`: track the top of the distribution, else the bottom.
  ExtremeValues(int64_t k, bool largest);

  void observe(std::span<const float> values);
  // observe() given each `chunk`-value chunk's most extreme value (its max
  // when tracking the largest, else its min), as scan_batch computes them:
  // chunks with nothing beyond the threshold are then not read at all.
  void observe(std::span<const float> values, std::span<const float> chunk_extremes, size_t chunk);

  // Whether the rank-th most extreme value (1-based) is known exactly.
  bool holds(int64_t rank) const;
  // The rank-th most extreme value; requires holds(rank).
  float value_at(int64_t rank) const;
  // The min(k, values seen) most extreme values, most extreme first.
  std::vector<float> most_extreme() const;

  size_t state_bytes() const { return kept_.capacity() * sizeof(float); }

 private:
  void observe_chunk(const float* values, size_t n);
  void compact();

  int64_t k_;
  bool largest_;
  int64_t seen_ = 0;
  // Every value not in kept_ is no more extreme than threshold_.
  float threshold_;
  std::vector<float> kept_;
};

}  // namespace amct
