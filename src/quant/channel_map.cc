#include "amct/channel_map.h"

#include <string>

#include "amct/error.h"

namespace amct {
namespace {

int64_t product(const std::vector<int64_t>& dims, size_t from) {
  int64_t n = 1;
  for (size_t i = from; i < dims.size(); ++i) {
    if (dims[i] <= 0) invalid("weight dimension " + std::to_string(i) + " is " + std::to_string(dims[i]) +
                              "; expected a positive size");
    if (__builtin_mul_overflow(n, dims[i], &n)) {
      std::string text;
      for (const int64_t d : dims) text += (text.empty() ? "" : ", ") + std::to_string(d);
      invalid("weight dims [" + text + "]: their product overflows int64");
    }
  }
  return n;
}

}  // namespace

ChannelMap ChannelMap::rows(int64_t rows, int64_t numel) {
  if (rows <= 0 || numel <= 0 || numel % rows != 0)
    invalid("a weight of " + std::to_string(numel) + " values cannot be viewed as " + std::to_string(rows) + " rows");
  ChannelMap map;
  map.numel_ = numel;
  map.channels_ = rows;
  map.inner_ = numel / rows;
  map.input_channels_ = numel / rows;
  return map;
}

ChannelMap ChannelMap::for_weight(WeightLayout layout, const std::vector<int64_t>& dims, int64_t groups, bool trans_b) {
  ChannelMap map;
  if (layout == WeightLayout::kNone) return map;
  const size_t min_rank = layout == WeightLayout::kGates ? 3 : 2;
  if (dims.size() < min_rank)
    invalid("weight of rank " + std::to_string(dims.size()) + "; expected at least " + std::to_string(min_rank));
  map.numel_ = product(dims, 0);
  if (groups <= 0) invalid("group is " + std::to_string(groups) + "; expected a positive value");
  switch (layout) {
    case WeightLayout::kOutFirst:
      map.channels_ = dims[0];
      map.inner_ = product(dims, 1);
      map.input_channels_ = dims[1] * groups;
      break;
    case WeightLayout::kDeconv:
      if (dims[0] % groups != 0)
        invalid("weight dimension 0 (" + std::to_string(dims[0]) + ") is not divisible by group " +
                std::to_string(groups));
      map.pattern_ = groups == 1 ? Pattern::kMiddle : Pattern::kDeconv;
      map.axis_ = groups == 1 ? 1 : -1;
      map.channels_ = dims[1] * groups;
      map.inner_ = product(dims, 2);
      map.group_in_ = dims[0] / groups;
      map.group_out_ = dims[1];
      map.input_channels_ = dims[0];
      break;
    case WeightLayout::kGemm:
      if (trans_b) {
        map.channels_ = dims[0];
        map.inner_ = dims[1];
        map.input_channels_ = dims[1];
        break;
      }
      [[fallthrough]];
    case WeightLayout::kInOut:
      map.pattern_ = Pattern::kTrailing;
      map.axis_ = 1;
      map.channels_ = dims[1];
      map.input_channels_ = dims[0];
      break;
    case WeightLayout::kGates:
      // [directions, gates * hidden, input]: one scale per row of a direction.
      map.pattern_ = Pattern::kMiddle;
      map.axis_ = 1;
      map.channels_ = dims[1];
      map.inner_ = dims[2];
      map.input_channels_ = dims[2];
      break;
    case WeightLayout::kNone:
      break;
  }
  return map;
}

int64_t ChannelMap::channel_of(int64_t element) const {
  switch (pattern_) {
    case Pattern::kLeading: return element / inner_;
    case Pattern::kTrailing: return element % channels_;
    case Pattern::kMiddle: return (element / inner_) % channels_;
    case Pattern::kDeconv: {
      // [Cin, Cout/g, k...]: input channel i of group i / (Cin/g) feeds
      // output channels g * Cout/g + local.
      const int64_t in_channel = element / (group_out_ * inner_);
      const int64_t local_out = (element / inner_) % group_out_;
      return (in_channel / group_in_) * group_out_ + local_out;
    }
  }
  return 0;
}

}  // namespace amct
