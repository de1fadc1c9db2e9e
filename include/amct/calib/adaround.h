// AdaRound (docs/amct-reference.md#ada_quantize): for a fixed weight scale,
// learns per weight whether to round down or up so that the layer's output on
// its real inputs, after the activation that follows it, stays close to the
// float layer's. The gradients of the reconstruction loss are closed-form
// (the layer is linear in its weight), so this runs in plain C++: no autograd
// and no torch.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "amct/channel_map.h"
#include "amct/quant_format.h"

namespace amct {

// The inputs a layer saw, as the calibration data gave them: Linear
// [..., Cin], Conv2d / ConvTranspose2d [N, Cin, H, W].
struct LayerInputs {
  std::vector<float> values;
  std::vector<int64_t> shape;
};

// A layer's op, in torch's weight layout: Linear [Cout, Cin], Conv2d
// [Cout, Cin/groups, kh, kw], ConvTranspose2d [Cin, Cout/groups, kh, kw].
struct AdaLayerShape {
  enum class Op { kLinear, kConv2d, kConvTranspose2d };
  Op op = Op::kLinear;
  std::vector<int64_t> weight_shape;
  int64_t groups = 1;
  std::array<int64_t, 2> strides{1, 1};
  std::array<int64_t, 2> pads_begin{0, 0};
  std::array<int64_t, 2> pads_end{0, 0};
  std::array<int64_t, 2> dilations{1, 1};
  std::array<int64_t, 2> output_padding{0, 0};  // ConvTranspose2d only
};

// The activation that follows the layer (identity when none qualifies).
struct FollowingActivation {
  enum class Kind { kIdentity, kRelu, kSigmoid, kTanh, kLeakyRelu, kClip };
  Kind kind = Kind::kIdentity;
  float alpha = 0.01f;  // LeakyRelu
  float low = 0.0f;     // Clip
  float high = 6.0f;
};

// The layer's weight-to-output map over a fixed set of input samples
// (images, or rows of a Linear input). Linear in the weight, so the
// reconstruction loss has closed-form gradients.
class AdaLayerOp {
 public:
  virtual ~AdaLayerOp() = default;
  int64_t samples() const { return samples_; }
  int64_t output_channels() const { return output_channels_; }
  int64_t positions() const { return positions_; }  // output values per channel and sample
  // out[b, c, p] = (weight * input[batch[b]])[c, p], without bias.
  virtual void forward(std::span<const float> weight, std::span<const int64_t> batch, std::vector<float>& out) const = 0;
  // grad_weight += d/dweight of sum(grad_out * forward(weight, batch)).
  virtual void backward(std::span<const float> grad_out, std::span<const int64_t> batch,
                        std::span<float> grad_weight) const = 0;

  // The op as one matrix product per group, which lets adaround() work on a
  // sample of output values: output channel c (of group c / (output_channels
  // / groups)) at (sample, position) is the sum over r < rows of
  // weight[weight_index[c * rows + r]] * column(sample, position)[group * rows + r].
  // An op with an empty weight_index offers no columns; adaround() then uses
  // forward/backward on whole samples.
  int64_t groups() const { return groups_; }
  int64_t rows() const { return rows_; }
  std::span<const int64_t> weight_index() const { return weight_index_; }
  // Writes groups * rows values to dst.
  virtual void column(int64_t sample, int64_t position, float* dst) const;

 protected:
  int64_t samples_ = 0;
  int64_t output_channels_ = 0;
  int64_t positions_ = 0;
  int64_t groups_ = 1;
  int64_t rows_ = 0;
  std::vector<int64_t> weight_index_;
};

// The im2col / matrix-product implementation. Throws kInvalidArgument when
// the inputs do not fit the layer, naming `layer`.
std::unique_ptr<AdaLayerOp> make_ada_layer_op(const AdaLayerShape& shape, const LayerInputs& inputs,
                                              const std::string& layer);

struct AdaRoundSettings {
  int64_t num_iteration = 10000;
  double reg_param = 0.01;
  double warm_start = 0.2;
  double beta_start = 20.0;
  double beta_end = 2.0;
  int64_t batch_size = 32;     // samples per step, drawn at random
  // Output values (sample, position) per step: drawn at random from the
  // step's samples when they hold more, so that a step costs the same on a
  // 112x112 feature map as on a 7x7 one. The sampled loss is an unbiased
  // estimate of the step's loss. 0: every output value of the step's samples.
  int64_t columns = 256;
  double learning_rate = 1e-3;  // Adam, torch's defaults
  uint64_t seed = 0;
};

// The weight's integers: clamp(floor(w / scale) + up, min, max) with `up`
// learnt per weight. `weight` is in `op`'s layout, `channels` says which
// output channel (scale) each element uses, `bias` has one value per output
// channel or none.
std::vector<int32_t> adaround(std::span<const float> weight, const ChannelMap& channels, std::span<const float> scale,
                              QuantFormat format, std::span<const float> bias, const AdaLayerOp& op,
                              const FollowingActivation& activation, const AdaRoundSettings& settings);

// sum over all samples of ||f(op(a) + bias) - f(op(b) + bias)||^2: the
// reconstruction error the tests and benchmarks compare.
double reconstruction_error(std::span<const float> a, std::span<const float> b, std::span<const float> bias,
                            const AdaLayerOp& op, const FollowingActivation& activation);

}  // namespace amct
