#include "amct/calib/distinct_values.h"

#include <algorithm>
#include <bit>

namespace amct {
namespace {

constexpr uint32_t kFree = 0xffffffffu;
// Twice the capacity keeps probe sequences short.
constexpr int kSlotBits = std::bit_width(2 * DistinctValues::kCapacity - 1);
constexpr size_t kSlots = size_t{1} << kSlotBits;

size_t slot_of(uint32_t key) { return (key * 0x9e3779b1u) >> (32 - kSlotBits); }

}  // namespace

DistinctValues::DistinctValues() : keys_(kSlots, kFree), counts_(kSlots, 0) {}

void DistinctValues::observe(std::span<const float> values) {
  if (!complete_) return;
  // Runs of one value (the zeros after a ReLU) skip the probe.
  uint32_t last_key = kFree;
  size_t last_slot = 0;
  for (const float x : values) {
    const uint32_t key = x == 0.0f ? 0u : std::bit_cast<uint32_t>(x);
    if (key == last_key) {
      ++counts_[last_slot];
      continue;
    }
    size_t slot = slot_of(key);
    while (keys_[slot] != key && keys_[slot] != kFree) slot = (slot + 1) & (kSlots - 1);
    if (keys_[slot] == kFree) {
      if (size_ == kCapacity) {
        give_up();
        return;
      }
      keys_[slot] = key;
      ++size_;
    }
    ++counts_[slot];
    last_key = key;
    last_slot = slot;
  }
}

void DistinctValues::give_up() {
  complete_ = false;
  size_ = 0;
  std::vector<uint32_t>().swap(keys_);
  std::vector<int64_t>().swap(counts_);
}

std::vector<std::pair<float, int64_t>> DistinctValues::sorted() const {
  std::vector<std::pair<float, int64_t>> out;
  out.reserve(size_);
  for (size_t slot = 0; slot < keys_.size(); ++slot)
    if (keys_[slot] != kFree) out.emplace_back(std::bit_cast<float>(keys_[slot]), counts_[slot]);
  std::sort(out.begin(), out.end());
  return out;
}

size_t DistinctValues::state_bytes() const {
  return sizeof(*this) + keys_.capacity() * sizeof(uint32_t) + counts_.capacity() * sizeof(int64_t);
}

}  // namespace amct
