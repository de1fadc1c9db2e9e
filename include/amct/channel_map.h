// Which output channel each element of a layer's weight belongs to. Scales
// run along output channels; how a layout's axes map to them is written here
// once (the ConvTranspose regrouping of docs/amct-reference.md#convtranspose-channel-regrouping
// included), without moving any data.
#pragma once

#include <cstdint>
#include <vector>

#include "amct/layer_kind.h"

namespace amct {

class ChannelMap {
 public:
  // A [rows, numel / rows] matrix whose rows are the channels.
  static ChannelMap rows(int64_t rows, int64_t numel);
  // The weight of a layer of `layout` with `dims`; `groups` for Conv and
  // ConvTranspose, `trans_b` for Gemm. Throws kInvalidArgument when the dims
  // do not fit the layout.
  static ChannelMap for_weight(WeightLayout layout, const std::vector<int64_t>& dims, int64_t groups = 1,
                               bool trans_b = false);

  int64_t channels() const { return channels_; }
  int64_t numel() const { return numel_; }
  // Input channels of the layer (the axis DMQ balances), 0 if unknown.
  int64_t input_channels() const { return input_channels_; }
  int64_t channel_of(int64_t element) const;
  // The weight axis that indexes output channels, or -1 when no single axis
  // does (a grouped ConvTranspose: the channel is group x Cout/group).
  int axis() const { return axis_; }

 private:
  enum class Pattern { kLeading, kTrailing, kDeconv, kMiddle };
  Pattern pattern_ = Pattern::kLeading;
  int64_t numel_ = 0;
  int64_t channels_ = 1;
  int64_t input_channels_ = 0;
  int axis_ = 0;
  int64_t inner_ = 1;        // elements per step of the channel axis
  int64_t group_in_ = 1;     // ConvTranspose: input channels per group
  int64_t group_out_ = 1;    // ConvTranspose: output channels per group
};

}  // namespace amct
