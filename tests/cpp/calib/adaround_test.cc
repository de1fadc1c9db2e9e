#include "amct/calib/adaround.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "amct/calib/arq.h"
#include "amct/calib/kl_weight_scale.h"
#include "amct/error.h"
#include "amct/weight_quant.h"

namespace amct {
namespace {

// The plain reference of the layer ops: each output value summed straight
// from the definition of Linear / Conv2d / ConvTranspose2d, no im2col.
class DirectOp final : public AdaLayerOp {
 public:
  DirectOp(const AdaLayerShape& shape, const LayerInputs& inputs) : shape_(shape), x_(inputs) {
    const auto& w = shape.weight_shape;
    if (shape.op == AdaLayerShape::Op::kLinear) {
      samples_ = inputs.shape[0];
      output_channels_ = w[0];
      positions_ = 1;
      return;
    }
    samples_ = inputs.shape[0];
    in_h_ = inputs.shape[2];
    in_w_ = inputs.shape[3];
    if (shape.op == AdaLayerShape::Op::kConv2d) {
      output_channels_ = w[0];
      out_h_ = (in_h_ + shape.pads_begin[0] + shape.pads_end[0] - shape.dilations[0] * (w[2] - 1) - 1) /
                   shape.strides[0] + 1;
      out_w_ = (in_w_ + shape.pads_begin[1] + shape.pads_end[1] - shape.dilations[1] * (w[3] - 1) - 1) /
                   shape.strides[1] + 1;
    } else {
      output_channels_ = w[1] * shape.groups;
      out_h_ = (in_h_ - 1) * shape.strides[0] - shape.pads_begin[0] - shape.pads_end[0] +
               shape.dilations[0] * (w[2] - 1) + shape.output_padding[0] + 1;
      out_w_ = (in_w_ - 1) * shape.strides[1] - shape.pads_begin[1] - shape.pads_end[1] +
               shape.dilations[1] * (w[3] - 1) + shape.output_padding[1] + 1;
    }
    positions_ = out_h_ * out_w_;
  }

  void forward(std::span<const float> weight, std::span<const int64_t> batch, std::vector<float>& out) const override {
    out.assign(batch.size() * output_channels_ * positions_, 0.0f);
    for (size_t b = 0; b < batch.size(); ++b)
      visit(batch[b], [&](int64_t w, int64_t x, int64_t o) { out[b * output_channels_ * positions_ + o] += weight[w] * x_.values[x]; });
  }
  void backward(std::span<const float> grad_out, std::span<const int64_t> batch,
                std::span<float> grad_weight) const override {
    for (size_t b = 0; b < batch.size(); ++b)
      visit(batch[b], [&](int64_t w, int64_t x, int64_t o) {
        grad_weight[w] += grad_out[b * output_channels_ * positions_ + o] * x_.values[x];
      });
  }

 private:
  // Calls f(weight index, input index, output index within the sample) for
  // every product the layer sums.
  template <typename F>
  void visit(int64_t s, F f) const {
    const auto& w = shape_.weight_shape;
    if (shape_.op == AdaLayerShape::Op::kLinear) {
      for (int64_t co = 0; co < w[0]; ++co)
        for (int64_t ci = 0; ci < w[1]; ++ci) f(co * w[1] + ci, s * w[1] + ci, co);
      return;
    }
    const int64_t cin = x_.shape[1], g = shape_.groups;
    for (int64_t ci = 0; ci < cin; ++ci)
      for (int64_t ky = 0; ky < w[2]; ++ky)
        for (int64_t kx = 0; kx < w[3]; ++kx)
          if (shape_.op == AdaLayerShape::Op::kConv2d) {
            const int64_t group = ci / (cin / g), cil = ci % (cin / g), per = w[0] / g;
            for (int64_t col = 0; col < per; ++col)
              for (int64_t oy = 0; oy < out_h_; ++oy)
                for (int64_t ox = 0; ox < out_w_; ++ox) {
                  const int64_t iy = oy * shape_.strides[0] - shape_.pads_begin[0] + ky * shape_.dilations[0];
                  const int64_t ix = ox * shape_.strides[1] - shape_.pads_begin[1] + kx * shape_.dilations[1];
                  if (iy < 0 || iy >= in_h_ || ix < 0 || ix >= in_w_) continue;
                  const int64_t co = group * per + col;
                  f(((co * w[1] + cil) * w[2] + ky) * w[3] + kx, ((s * cin + ci) * in_h_ + iy) * in_w_ + ix,
                    (co * out_h_ + oy) * out_w_ + ox);
                }
          } else {
            const int64_t group = ci / (cin / g);
            for (int64_t col = 0; col < w[1]; ++col)
              for (int64_t iy = 0; iy < in_h_; ++iy)
                for (int64_t ix = 0; ix < in_w_; ++ix) {
                  const int64_t oy = iy * shape_.strides[0] - shape_.pads_begin[0] + ky * shape_.dilations[0];
                  const int64_t ox = ix * shape_.strides[1] - shape_.pads_begin[1] + kx * shape_.dilations[1];
                  if (oy < 0 || oy >= out_h_ || ox < 0 || ox >= out_w_) continue;
                  const int64_t co = group * w[1] + col;
                  f(((ci * w[1] + col) * w[2] + ky) * w[3] + kx, ((s * cin + ci) * in_h_ + iy) * in_w_ + ix,
                    (co * out_h_ + oy) * out_w_ + ox);
                }
          }
  }

  AdaLayerShape shape_;
  LayerInputs x_;
  int64_t in_h_ = 1, in_w_ = 1, out_h_ = 1, out_w_ = 1;
};

std::vector<float> normal(size_t n, uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

struct Case {
  const char* name;
  AdaLayerShape shape;
  std::vector<int64_t> input_shape;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  AdaLayerShape linear;
  linear.weight_shape = {12, 20};
  out.push_back({"Linear", linear, {48, 20}});
  AdaLayerShape conv;
  conv.op = AdaLayerShape::Op::kConv2d;
  conv.weight_shape = {6, 2, 3, 3};
  conv.groups = 2;
  conv.strides = {2, 1};
  conv.pads_begin = {1, 0};
  conv.pads_end = {0, 1};
  conv.dilations = {1, 2};
  out.push_back({"Conv2d", conv, {40, 4, 7, 8}});
  AdaLayerShape deconv;
  deconv.op = AdaLayerShape::Op::kConvTranspose2d;
  deconv.weight_shape = {4, 3, 3, 2};
  deconv.groups = 2;
  deconv.strides = {2, 2};
  deconv.pads_begin = {1, 0};
  deconv.pads_end = {1, 1};
  deconv.output_padding = {1, 0};
  deconv.dilations = {1, 2};
  out.push_back({"ConvTranspose2d", deconv, {40, 4, 5, 4}});
  return out;
}

// Real activations are correlated across channels (which is what lets
// AdaRound beat round-to-nearest: for independent inputs nearest is already
// optimal): x[n, c, p] = common[n, p] + 0.3 noise.
LayerInputs inputs_for(const Case& c, uint64_t seed) {
  const int64_t n = c.input_shape[0], channels = c.input_shape[1];
  const int64_t positions = numel(c.input_shape) / (n * channels);
  std::vector<float> x = normal(static_cast<size_t>(numel(c.input_shape)), seed);
  const std::vector<float> common = normal(static_cast<size_t>(n * positions), seed + 100);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < channels; ++ch)
      for (int64_t p = 0; p < positions; ++p) {
        float& v = x[static_cast<size_t>((b * channels + ch) * positions + p)];
        v = common[static_cast<size_t>(b * positions + p)] + 0.3f * v;
      }
  return {x, c.input_shape};
}

ChannelMap channels_for(const AdaLayerShape& shape) {
  const int64_t n = numel(shape.weight_shape);
  if (shape.op == AdaLayerShape::Op::kConvTranspose2d)
    return ChannelMap::for_weight(WeightLayout::kDeconv, shape.weight_shape, shape.groups);
  return ChannelMap::rows(shape.weight_shape[0], n);
}

TEST(AdaRound, FastOpMatchesDirectDefinition) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const LayerInputs x = inputs_for(c, 1);
    const auto fast = make_ada_layer_op(c.shape, x, "layer");
    const DirectOp direct(c.shape, x);
    ASSERT_EQ(fast->positions(), direct.positions());
    ASSERT_EQ(fast->output_channels(), direct.output_channels());
    ASSERT_EQ(fast->samples(), c.input_shape[0]);
    const std::vector<float> w = normal(static_cast<size_t>(numel(c.shape.weight_shape)), 2);
    const std::vector<int64_t> batch = {5, 0, 39};  // every case has 40 or more samples
    std::vector<float> a, b;
    fast->forward(w, batch, a);
    direct.forward(w, batch, b);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f * (1.0f + std::fabs(b[i])));
    const std::vector<float> grad_out = normal(a.size(), 3);
    std::vector<float> ga(w.size(), 0.0f), gb(w.size(), 0.0f);
    fast->backward(grad_out, batch, ga);
    direct.backward(grad_out, batch, gb);
    for (size_t i = 0; i < ga.size(); ++i) EXPECT_NEAR(ga[i], gb[i], 1e-4f * (1.0f + std::fabs(gb[i])));
  }
}

// The columns the sampled loop multiplies (adaround's fast path) give the
// op's outputs: out[c, p] = sum_r weight[index[c * rows + r]] * column(p)[group * rows + r].
TEST(AdaRound, ColumnsReproduceTheOutputs) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const LayerInputs x = inputs_for(c, 13);
    const auto op = make_ada_layer_op(c.shape, x, "layer");
    const std::vector<float> w = normal(static_cast<size_t>(numel(c.shape.weight_shape)), 14);
    const auto index = op->weight_index();
    ASSERT_EQ(index.size(), w.size());
    const int64_t rows = op->rows(), per_group = op->output_channels() / op->groups();
    const std::vector<int64_t> batch = {17};
    std::vector<float> out;
    op->forward(w, batch, out);
    std::vector<float> column(static_cast<size_t>(op->groups() * rows));
    for (int64_t p = 0; p < op->positions(); ++p) {
      op->column(17, p, column.data());
      for (int64_t ch = 0; ch < op->output_channels(); ++ch) {
        double sum = 0.0;
        for (int64_t r = 0; r < rows; ++r)
          sum += w[static_cast<size_t>(index[static_cast<size_t>(ch * rows + r)])] *
                 column[static_cast<size_t>(ch / per_group * rows + r)];
        EXPECT_NEAR(sum, out[static_cast<size_t>(ch * op->positions() + p)], 1e-4) << "channel " << ch << " position " << p;
      }
    }
  }
}

TEST(AdaRound, SameRoundingWithFastAndDirectOps) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const LayerInputs x = inputs_for(c, 4);
    const std::vector<float> w = normal(static_cast<size_t>(numel(c.shape.weight_shape)), 5, 0.3f);
    const ChannelMap channels = channels_for(c.shape);
    const std::vector<float> scale = kl_weight_scales(w, channels, true, 8);
    const std::vector<float> bias = normal(static_cast<size_t>(channels.channels()), 6, 0.1f);
    FollowingActivation relu;
    relu.kind = FollowingActivation::Kind::kRelu;
    AdaRoundSettings settings;
    settings.num_iteration = 200;
    settings.columns = 0;  // every output value: the same steps as the reference's
    const auto fast = make_ada_layer_op(c.shape, x, "layer");
    const DirectOp direct(c.shape, x);
    const auto a = adaround(w, channels, scale, QuantFormat::signed_bits(8), bias, *fast, relu, settings);
    const auto b = adaround(w, channels, scale, QuantFormat::signed_bits(8), bias, direct, relu, settings);
    EXPECT_EQ(a, b);
  }
}

// AdaRound's reason to exist: a lower reconstruction error than ARQ's
// round-to-nearest on the same inputs.
TEST(AdaRound, LowersReconstructionErrorAgainstArq) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const LayerInputs x = inputs_for(c, 7);
    const std::vector<float> w = normal(static_cast<size_t>(numel(c.shape.weight_shape)), 8, 0.3f);
    const ChannelMap channels = channels_for(c.shape);
    const QuantFormat format = QuantFormat::signed_bits(8);
    const auto op = make_ada_layer_op(c.shape, x, "layer");
    const std::vector<float> bias = normal(static_cast<size_t>(channels.channels()), 9, 0.1f);
    FollowingActivation act;
    act.kind = FollowingActivation::Kind::kLeakyRelu;
    act.alpha = 0.1f;

    const WeightScales arq = arq_quantize(w, channels, true, 8);
    const auto arq_w = dequantize_weight(integerize_weight(w, channels, arq.scale, format, "layer", "w"), channels,
                                         arq.scale);
    WeightQuantParams params;
    params.wts_algo = "ada_quantize";
    params.num_iteration = 3000;
    const AdaRoundLayer layer{op.get(), bias, act};
    const auto start = std::chrono::steady_clock::now();
    const QuantizedWeight ada = make_weight_quantizer(params, "layer", &layer)->quantize(w, channels, true, format);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto ada_w = dequantize_weight(ada.integers, channels, ada.scale);
    const double e_arq = reconstruction_error(w, arq_w, bias, *op, act);
    const double e_ada = reconstruction_error(w, ada_w, bias, *op, act);
    RecordProperty(std::string(c.name) + "_ada_over_arq", std::to_string(e_ada / e_arq));
    RecordProperty(std::string(c.name) + "_seconds", std::to_string(seconds));
    EXPECT_LT(e_ada, 0.95 * e_arq);
    for (int32_t q : ada.integers) EXPECT_TRUE(q >= -128 && q <= 127);
  }
}

TEST(AdaRound, NoIterationsRoundsToNearestWithTheKlScale) {
  const Case c = cases()[0];
  const LayerInputs x = inputs_for(c, 10);
  const std::vector<float> w = normal(static_cast<size_t>(numel(c.shape.weight_shape)), 11);
  const ChannelMap channels = channels_for(c.shape);
  const std::vector<float> scale = kl_weight_scales(w, channels, false, 8);
  AdaRoundSettings settings;
  settings.num_iteration = 0;
  const auto op = make_ada_layer_op(c.shape, x, "layer");
  const auto q = adaround(w, channels, scale, QuantFormat::signed_bits(8), {}, *op, {}, settings);
  for (size_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(q[i], static_cast<int32_t>(std::clamp(std::floor(w[i] / scale[0] + 0.5f), -128.0f, 127.0f)));
}

TEST(KlWeightScale, FullRangeWithoutOutliersClippedWithOne) {
  // Uniform values fill every bin: clipping only adds error, so the window
  // is the whole range and the scale is max|W| / 128.
  std::vector<float> uniform;
  for (int i = -2560; i <= 2560; ++i) uniform.push_back(static_cast<float>(i) / 2560.0f);
  EXPECT_FLOAT_EQ(kl_weight_scale(uniform, 8), 1.0f / 128.0f);
  // A Gaussian with one far outlier: the search clips it (window i > 0).
  std::vector<float> spiky = normal(20000, 12);
  spiky.push_back(40.0f);
  const float s = kl_weight_scale(spiky, 8);
  EXPECT_LT(s, 40.0f / 128.0f);
  const double i = (1.0 - static_cast<double>(s) * 128.0 / 40.0) * 512.0 / 2.0;
  EXPECT_NEAR(i, std::round(i), 1e-3);
  EXPECT_GE(std::round(i), 1.0);
  EXPECT_LE(std::round(i), 19.0);
  EXPECT_FLOAT_EQ(kl_weight_scale(std::vector<float>{0.0f, 0.0f}, 8), 1.0f);
}

TEST(AdaRound, InputsThatDoNotFitTheLayerAreRefused) {
  const Case c = cases()[1];
  try {
    make_ada_layer_op(c.shape, LayerInputs{std::vector<float>(3 * 5 * 7 * 8), {3, 5, 7, 8}}, "features.0");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "layer 'features.0': its inputs have shape [3, 5, 7, 8]; expected [N, 4, H, W] for its weight "
                 "[6, 2, 3, 3]");
  }
  WeightQuantParams ada;
  ada.wts_algo = "ada_quantize";
  try {
    make_weight_quantizer(ada, "fc");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "layer 'fc': ada_quantize needs the layer's inputs, and none were given");
  }
}

}  // namespace
}  // namespace amct
