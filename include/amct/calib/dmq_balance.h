// DMQ balancing math (docs/amct-reference.md#dmq-balancing): per input
// channel c, the balance factor s_c = max|X_c|^a / max|W_c|^(1-a) moves
// activation outliers into the weights. The layer then computes
// (X / s) * (W * s), which equals X * W before quantization, with an input
// that is easier to quantize per tensor.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "amct/layer_kind.h"

namespace amct {

// Which input channel each element of a layer's weight belongs to: the axis
// DMQ scales. A grouped Conv's weight [Cout, Cin/g, k...] holds the global
// input channel g * Cin/g + local, so the factor index is the channel of the
// layer's input tensor. Nothing is moved.
class InputChannelMap {
 public:
  // `groups` for Conv and ConvTranspose, `trans_b` for Gemm; dims as in the
  // graph. Throws kInvalidArgument when the dims do not fit the layout.
  static InputChannelMap for_weight(WeightLayout layout, const std::vector<int64_t>& dims, int64_t groups = 1,
                                    bool trans_b = false);

  int64_t channels() const { return channels_; }
  int64_t numel() const { return numel_; }
  int64_t channel_of(int64_t element) const;

 private:
  enum class Pattern { kLeading, kTrailing, kGroupedConv };
  Pattern pattern_ = Pattern::kLeading;
  int64_t numel_ = 0;
  int64_t channels_ = 0;
  int64_t inner_ = 1;         // elements per step of the input-channel axis
  int64_t group_in_ = 1;      // grouped Conv: input channels per group
  int64_t group_out_ = 1;     // grouped Conv: output channels per group
};

// max|W_c| per input channel of `map`.
std::vector<float> weight_channel_abs_max(std::span<const float> weight, const InputChannelMap& map);

// Folds one activation tensor, viewed as [outer, channels, inner], into the
// running per-channel maxima `abs_max` (max|x| per channel). Returns false when
// the tensor holds an inf or NaN. The fast form walks each channel's
// contiguous run of `inner` values; the reference computes every element's
// channel on its own, and the two must agree exactly.
bool accumulate_channel_abs_max(std::span<const float> activation, int64_t channels, int64_t inner,
                                std::span<float> abs_max);
bool accumulate_channel_abs_max_reference(std::span<const float> activation, int64_t channels, int64_t inner,
                                          std::span<float> abs_max);

// The factors of docs/amct-reference.md#dmq-balancing from the per-channel
// maxima, in float32 as AMCT computes them:
//   s_c = a_c^alpha / w_c^(1-alpha), where w_c >= eps;
//   a_c < eps, w_c < eps:  1 (nothing to balance);
//   a_c < eps, w_c >= eps: max_j(w_j s_j) / w_c (the weight channel reaches the largest balanced weight);
//   a_c >= eps, w_c < eps: a_c / max_j(a_j / s_j) (the input channel reaches the largest balanced input);
// the maxima over channels whose first factor is >= eps. When no channel has
// one (the whole input or weight is zero), every factor is 1: that is what
// AMCT's code means to return, though it crashes there.
std::vector<float> balance_factors(std::span<const float> activation_max, std::span<const float> weight_max,
                                   float migration_strength);

// AMCT's limit on computed factors: each must lie strictly between FLT_EPSILON
// and 1/FLT_EPSILON. Throws kRuntime naming the layer and the first channel
// outside.
void check_balance_factors(std::span<const float> factors, const std::string& layer);

// weight[e] *= factors[channel_of(e)]: the weight side of the balance.
void scale_weight_input_channels(std::span<float> weight, const InputChannelMap& map, std::span<const float> factors);

// activation[o, c, i] /= factors[c], the activation viewed as [outer,
// channels, inner]: the input side of the balance, in float32 as the
// calibration model divides it, for the computations that need the input the
// balanced layer sees (AdaRound's reconstruction).
void divide_input_channels(std::span<float> activation, int64_t channels, int64_t inner,
                           std::span<const float> factors);

}  // namespace amct
