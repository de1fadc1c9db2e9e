#include "amct/calib/adaround.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <string>

#include "amct/calib/ada_matmul.h"
#include "amct/calib/parallel_slices.h"
#include "amct/error.h"

namespace amct {
namespace {

// h(alpha) = clamp(sigmoid(alpha) * (zeta - gamma) + gamma, 0, 1).
constexpr double kZeta = 1.1;
constexpr double kGamma = -0.1;
constexpr auto kStretch = static_cast<float>(kZeta - kGamma);
constexpr auto kLow = static_cast<float>(kGamma);
// Per-weight passes over fewer values than this stay on one thread.
constexpr size_t kMinThreadedWeights = size_t{1} << 16;
// The targets of all samples are kept; beyond this many floats only the
// first samples are used.
constexpr int64_t kMaxTargetValues = int64_t{1} << 26;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Where kernel tap k of the small-side position s lands on the big side:
// big = s * stride - pad + k * dilation. A Conv reads its input (big) at
// each output (small) position; a ConvTranspose writes its output (big)
// from each input (small) position, so one map serves both.
struct Im2Col {
  int64_t channels = 0;
  int64_t big_h = 0, big_w = 0, small_h = 0, small_w = 0, kh = 1, kw = 1;
  std::array<int64_t, 2> strides{1, 1}, pads{0, 0}, dilations{1, 1};

  int64_t taps() const { return kh * kw; }
  int64_t small() const { return small_h * small_w; }

  // cols[(c * taps + k) * small + s] = image[c, big(s, k)] (0 outside).
  void gather(const float* image, float* cols) const {
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          float* row = cols + ((c * kh + i) * kw + j) * small();
          for (int64_t y = 0; y < small_h; ++y) {
            const int64_t by = y * strides[0] - pads[0] + i * dilations[0];
            for (int64_t x = 0; x < small_w; ++x) {
              const int64_t bx = x * strides[1] - pads[1] + j * dilations[1];
              row[y * small_w + x] = (by >= 0 && by < big_h && bx >= 0 && bx < big_w)
                                         ? image[(c * big_h + by) * big_w + bx]
                                         : 0.0f;
            }
          }
        }
  }
  // The values gather puts at small-side position s, in gather's row order.
  void gather_column(const float* image, int64_t s, float* column) const {
    const int64_t y = s / small_w, x = s % small_w;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < kh; ++i) {
        const int64_t by = y * strides[0] - pads[0] + i * dilations[0];
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t bx = x * strides[1] - pads[1] + j * dilations[1];
          *column++ = (by >= 0 && by < big_h && bx >= 0 && bx < big_w) ? image[(c * big_h + by) * big_w + bx] : 0.0f;
        }
      }
  }
  // The adjoint of gather: image[c, big(s, k)] += cols[(c * taps + k) * small + s].
  void scatter(const float* cols, float* image) const {
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const float* row = cols + ((c * kh + i) * kw + j) * small();
          for (int64_t y = 0; y < small_h; ++y) {
            const int64_t by = y * strides[0] - pads[0] + i * dilations[0];
            if (by < 0 || by >= big_h) continue;
            for (int64_t x = 0; x < small_w; ++x) {
              const int64_t bx = x * strides[1] - pads[1] + j * dilations[1];
              if (bx >= 0 && bx < big_w) image[(c * big_h + by) * big_w + bx] += row[y * small_w + x];
            }
          }
        }
  }
};

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

class LinearOp final : public AdaLayerOp {
 public:
  LinearOp(const AdaLayerShape& shape, const LayerInputs& inputs, const std::string& layer) : x_(inputs.values) {
    output_channels_ = shape.weight_shape[0];
    in_ = shape.weight_shape[1];
    if (inputs.shape.empty() || inputs.shape.back() != in_)
      invalid("layer '" + layer + "': its inputs have shape " + shape_text(inputs.shape) + "; expected [..., " +
              std::to_string(in_) + "] for its weight " + shape_text(shape.weight_shape));
    samples_ = static_cast<int64_t>(x_.size()) / in_;
    positions_ = 1;
    rows_ = in_;
    weight_index_.resize(static_cast<size_t>(output_channels_ * in_));
    std::iota(weight_index_.begin(), weight_index_.end(), 0);
  }
  void column(int64_t sample, int64_t, float* dst) const override {
    std::copy_n(x_.data() + sample * in_, in_, dst);
  }
  void forward(std::span<const float> weight, std::span<const int64_t> batch, std::vector<float>& out) const override {
    out.assign(batch.size() * static_cast<size_t>(output_channels_), 0.0f);
    for (size_t b = 0; b < batch.size(); ++b)
      for (int64_t c = 0; c < output_channels_; ++c)
        out[b * output_channels_ + c] = dot(weight.data() + c * in_, x_.data() + batch[b] * in_, in_);
  }
  void backward(std::span<const float> grad_out, std::span<const int64_t> batch,
                std::span<float> grad_weight) const override {
    for (size_t b = 0; b < batch.size(); ++b)
      for (int64_t c = 0; c < output_channels_; ++c)
        axpy(grad_out[b * output_channels_ + c], x_.data() + batch[b] * in_, grad_weight.data() + c * in_, in_);
  }

 private:
  std::vector<float> x_;
  int64_t in_ = 0;
};

std::array<int64_t, 4> image_shape(const LayerInputs& inputs, int64_t in_channels, const AdaLayerShape& shape,
                                   const std::string& layer) {
  if (inputs.shape.size() != 4 || inputs.shape[1] != in_channels)
    invalid("layer '" + layer + "': its inputs have shape " + shape_text(inputs.shape) + "; expected [N, " +
            std::to_string(in_channels) + ", H, W] for its weight " + shape_text(shape.weight_shape));
  return {inputs.shape[0], inputs.shape[1], inputs.shape[2], inputs.shape[3]};
}

// The kernel part of the map, the same for a Conv and a ConvTranspose.
Im2Col kernel_map(const AdaLayerShape& shape) {
  Im2Col map;
  map.kh = shape.weight_shape[2];
  map.kw = shape.weight_shape[3];
  map.strides = shape.strides;
  map.pads = shape.pads_begin;
  map.dilations = shape.dilations;
  return map;
}

// Conv2d: per sample, cols = im2col(x) and out_g = W_g cols_g per group.
class Conv2dOp final : public AdaLayerOp {
 public:
  Conv2dOp(const AdaLayerShape& shape, const LayerInputs& inputs, const std::string& layer) : x_(inputs.values) {
    const auto& w = shape.weight_shape;
    groups_ = shape.groups;
    const auto dims = image_shape(inputs, w[1] * groups_, shape, layer);
    samples_ = dims[0];
    output_channels_ = w[0];
    map_ = kernel_map(shape);
    map_.channels = dims[1];
    map_.big_h = dims[2];
    map_.big_w = dims[3];
    map_.small_h = (dims[2] + shape.pads_begin[0] + shape.pads_end[0] - shape.dilations[0] * (w[2] - 1) - 1) /
                       shape.strides[0] + 1;
    map_.small_w = (dims[3] + shape.pads_begin[1] + shape.pads_end[1] - shape.dilations[1] * (w[3] - 1) - 1) /
                       shape.strides[1] + 1;
    if (map_.small_h <= 0 || map_.small_w <= 0)
      invalid("layer '" + layer + "': its inputs " + shape_text(inputs.shape) + " are smaller than its kernel");
    positions_ = map_.small();
    rows_ = w[1] * map_.taps();
    weight_index_.resize(static_cast<size_t>(output_channels_ * rows_));
    std::iota(weight_index_.begin(), weight_index_.end(), 0);
  }
  void column(int64_t sample, int64_t position, float* dst) const override {
    map_.gather_column(image(sample), position, dst);
  }
  void forward(std::span<const float> weight, std::span<const int64_t> batch, std::vector<float>& out) const override {
    const int64_t per_sample = output_channels_ * positions_;
    out.assign(batch.size() * static_cast<size_t>(per_sample), 0.0f);
    std::vector<float> cols(static_cast<size_t>(rows_ * groups_ * positions_));
    const int64_t out_per_group = output_channels_ / groups_;
    for (size_t b = 0; b < batch.size(); ++b) {
      map_.gather(image(batch[b]), cols.data());
      for (int64_t c = 0; c < output_channels_; ++c) {
        const float* col_group = cols.data() + (c / out_per_group) * rows_ * positions_;
        float* o = out.data() + b * per_sample + c * positions_;
        for (int64_t r = 0; r < rows_; ++r) axpy(weight[c * rows_ + r], col_group + r * positions_, o, positions_);
      }
    }
  }
  void backward(std::span<const float> grad_out, std::span<const int64_t> batch,
                std::span<float> grad_weight) const override {
    const int64_t per_sample = output_channels_ * positions_;
    std::vector<float> cols(static_cast<size_t>(rows_ * groups_ * positions_));
    const int64_t out_per_group = output_channels_ / groups_;
    for (size_t b = 0; b < batch.size(); ++b) {
      map_.gather(image(batch[b]), cols.data());
      for (int64_t c = 0; c < output_channels_; ++c) {
        const float* col_group = cols.data() + (c / out_per_group) * rows_ * positions_;
        const float* g = grad_out.data() + b * per_sample + c * positions_;
        for (int64_t r = 0; r < rows_; ++r) grad_weight[c * rows_ + r] += dot(g, col_group + r * positions_, positions_);
      }
    }
  }

 private:
  const float* image(int64_t sample) const { return x_.data() + sample * map_.channels * map_.big_h * map_.big_w; }
  std::vector<float> x_;
  Im2Col map_;
};

// ConvTranspose2d: per sample, cols[(co, k), s] = sum over the group's ci of
// W[ci, co, k] x[ci, s], then col2im onto the output; the gradient gathers
// the output gradient back with im2col.
class ConvTranspose2dOp final : public AdaLayerOp {
 public:
  ConvTranspose2dOp(const AdaLayerShape& shape, const LayerInputs& inputs, const std::string& layer)
      : x_(inputs.values) {
    const auto& w = shape.weight_shape;
    groups_ = shape.groups;
    const auto dims = image_shape(inputs, w[0], shape, layer);
    samples_ = dims[0];
    in_channels_ = w[0];
    out_per_group_ = w[1];
    output_channels_ = w[1] * groups_;
    map_ = kernel_map(shape);
    map_.channels = output_channels_;
    map_.small_h = dims[2];
    map_.small_w = dims[3];
    map_.big_h = (dims[2] - 1) * shape.strides[0] - shape.pads_begin[0] - shape.pads_end[0] +
                 shape.dilations[0] * (w[2] - 1) + shape.output_padding[0] + 1;
    map_.big_w = (dims[3] - 1) * shape.strides[1] - shape.pads_begin[1] - shape.pads_end[1] +
                 shape.dilations[1] * (w[3] - 1) + shape.output_padding[1] + 1;
    if (map_.big_h <= 0 || map_.big_w <= 0)
      invalid("layer '" + layer + "': its inputs " + shape_text(inputs.shape) + " give an empty output");
    positions_ = map_.big_h * map_.big_w;
    // Row r = (ci within the group) * taps + tap of output channel co reads
    // W[ci, co within the group, tap].
    const int64_t in_per_group = in_channels_ / groups_;
    const int64_t taps = map_.taps();
    rows_ = in_per_group * taps;
    weight_index_.resize(static_cast<size_t>(output_channels_ * rows_));
    for (int64_t co = 0; co < output_channels_; ++co)
      for (int64_t r = 0; r < rows_; ++r) {
        const int64_t ci = co / out_per_group_ * in_per_group + r / taps;
        weight_index_[static_cast<size_t>(co * rows_ + r)] = (ci * out_per_group_ + co % out_per_group_) * taps + r % taps;
      }
  }
  // Output position p receives x[ci, s] through tap k where s lands on p.
  void column(int64_t sample, int64_t position, float* dst) const override {
    const float* x = image(sample);
    const int64_t oy = position / map_.big_w, ox = position % map_.big_w;
    for (int64_t ci = 0; ci < in_channels_; ++ci)
      for (int64_t i = 0; i < map_.kh; ++i) {
        const int64_t ty = oy + map_.pads[0] - i * map_.dilations[0];
        const int64_t sy = ty / map_.strides[0];
        const bool row_ok = ty >= 0 && ty % map_.strides[0] == 0 && sy < map_.small_h;
        for (int64_t j = 0; j < map_.kw; ++j) {
          const int64_t tx = ox + map_.pads[1] - j * map_.dilations[1];
          const int64_t sx = tx / map_.strides[1];
          const bool ok = row_ok && tx >= 0 && tx % map_.strides[1] == 0 && sx < map_.small_w;
          *dst++ = ok ? x[(ci * map_.small_h + sy) * map_.small_w + sx] : 0.0f;
        }
      }
  }
  void forward(std::span<const float> weight, std::span<const int64_t> batch, std::vector<float>& out) const override {
    const int64_t per_sample = output_channels_ * positions_;
    const int64_t small = map_.small();
    const int64_t row_len = out_per_group_ * map_.taps();  // one ci's weights
    out.assign(batch.size() * static_cast<size_t>(per_sample), 0.0f);
    std::vector<float> cols(static_cast<size_t>(output_channels_ * map_.taps() * small));
    for (size_t b = 0; b < batch.size(); ++b) {
      std::fill(cols.begin(), cols.end(), 0.0f);
      const float* x = image(batch[b]);
      for (int64_t ci = 0; ci < in_channels_; ++ci) {
        float* group_cols = cols.data() + (ci / (in_channels_ / groups_)) * row_len * small;
        for (int64_t r = 0; r < row_len; ++r) axpy(weight[ci * row_len + r], x + ci * small, group_cols + r * small, small);
      }
      map_.scatter(cols.data(), out.data() + b * per_sample);
    }
  }
  void backward(std::span<const float> grad_out, std::span<const int64_t> batch,
                std::span<float> grad_weight) const override {
    const int64_t per_sample = output_channels_ * positions_;
    const int64_t small = map_.small();
    const int64_t row_len = out_per_group_ * map_.taps();
    std::vector<float> cols(static_cast<size_t>(output_channels_ * map_.taps() * small));
    for (size_t b = 0; b < batch.size(); ++b) {
      map_.gather(grad_out.data() + b * per_sample, cols.data());
      const float* x = image(batch[b]);
      for (int64_t ci = 0; ci < in_channels_; ++ci) {
        const float* group_cols = cols.data() + (ci / (in_channels_ / groups_)) * row_len * small;
        for (int64_t r = 0; r < row_len; ++r)
          grad_weight[ci * row_len + r] += dot(x + ci * small, group_cols + r * small, small);
      }
    }
  }

 private:
  const float* image(int64_t sample) const { return x_.data() + sample * in_channels_ * map_.small(); }
  std::vector<float> x_;
  Im2Col map_;
  int64_t in_channels_ = 0;
  int64_t out_per_group_ = 0;
};

float activate(const FollowingActivation& f, float y) {
  switch (f.kind) {
    case FollowingActivation::Kind::kIdentity: return y;
    case FollowingActivation::Kind::kRelu: return y > 0.0f ? y : 0.0f;
    case FollowingActivation::Kind::kSigmoid: return 1.0f / (1.0f + std::exp(-y));
    case FollowingActivation::Kind::kTanh: return std::tanh(y);
    case FollowingActivation::Kind::kLeakyRelu: return y >= 0.0f ? y : f.alpha * y;
    case FollowingActivation::Kind::kClip: return std::clamp(y, f.low, f.high);
  }
  return y;
}

// f'(y) given y and a = f(y).
float activation_slope(const FollowingActivation& f, float y, float a) {
  switch (f.kind) {
    case FollowingActivation::Kind::kIdentity: return 1.0f;
    case FollowingActivation::Kind::kRelu: return y > 0.0f ? 1.0f : 0.0f;
    case FollowingActivation::Kind::kSigmoid: return a * (1.0f - a);
    case FollowingActivation::Kind::kTanh: return 1.0f - a * a;
    case FollowingActivation::Kind::kLeakyRelu: return y >= 0.0f ? 1.0f : f.alpha;
    case FollowingActivation::Kind::kClip: return (y >= f.low && y <= f.high) ? 1.0f : 0.0f;
  }
  return 1.0f;
}

// f(op(weight)[batch] + bias), in place over `out`.
void layer_output(std::span<const float> weight, std::span<const float> bias, const AdaLayerOp& op,
                  const FollowingActivation& f, std::span<const int64_t> batch, std::vector<float>& out) {
  op.forward(weight, batch, out);
  const int64_t channels = op.output_channels();
  const int64_t positions = op.positions();
  for (size_t i = 0; i < out.size(); ++i) {
    const float b = bias.empty() ? 0.0f : bias[static_cast<size_t>((static_cast<int64_t>(i) / positions) % channels)];
    out[i] = activate(f, out[i] + b);
  }
}

// fn(begin, end) over [0, n), split over the hardware threads when n is large.
void for_each_slice(size_t n, const std::function<void(size_t, size_t)>& fn) {
  const size_t slices =
      n < kMinThreadedWeights ? 1 : std::min({available_threads(), n / (kMinThreadedWeights / 2), kMaxSlices});
  if (slices <= 1) return fn(0, n);
  run_slices(n, slices, 1, [&](size_t, size_t begin, size_t end) { fn(begin, end); });
}

// The learnt rounding is hard: up where h(alpha) >= 0.5, i.e. alpha >= 0.
std::vector<int32_t> round_hard(const std::vector<float>& base, const std::vector<float>& alpha, float lo, float hi) {
  std::vector<int32_t> integers(base.size());
  for (size_t i = 0; i < base.size(); ++i)
    integers[i] = static_cast<int32_t>(std::clamp(base[i] + (alpha[i] >= 0.0f ? 1.0f : 0.0f), lo, hi));
  return integers;
}

}  // namespace

std::unique_ptr<AdaLayerOp> make_ada_layer_op(const AdaLayerShape& shape, const LayerInputs& inputs,
                                              const std::string& layer) {
  const size_t rank = shape.op == AdaLayerShape::Op::kLinear ? 2 : 4;
  if (shape.weight_shape.size() != rank)
    invalid("layer '" + layer + "': weight shape " + shape_text(shape.weight_shape) + " has rank " +
            std::to_string(shape.weight_shape.size()) + "; ada_quantize expects rank " + std::to_string(rank));
  if (shape.groups < 1 || (shape.op == AdaLayerShape::Op::kConv2d && shape.weight_shape[0] % shape.groups != 0) ||
      (shape.op == AdaLayerShape::Op::kConvTranspose2d && shape.weight_shape[0] % shape.groups != 0))
    invalid("layer '" + layer + "': group " + std::to_string(shape.groups) + " does not divide its channels");
  int64_t numel = 1;
  for (int64_t d : inputs.shape) numel *= d;
  if (numel != static_cast<int64_t>(inputs.values.size()) || numel == 0)
    invalid("layer '" + layer + "': its inputs hold " + std::to_string(inputs.values.size()) +
            " values for shape " + shape_text(inputs.shape) + "; expected a non-empty tensor of that shape");
  switch (shape.op) {
    case AdaLayerShape::Op::kLinear: return std::make_unique<LinearOp>(shape, inputs, layer);
    case AdaLayerShape::Op::kConv2d: return std::make_unique<Conv2dOp>(shape, inputs, layer);
    case AdaLayerShape::Op::kConvTranspose2d: return std::make_unique<ConvTranspose2dOp>(shape, inputs, layer);
  }
  invalid("layer '" + layer + "': unknown op");
}

void AdaLayerOp::column(int64_t, int64_t, float*) const {
  fail(ErrorCode::kRuntime, "this AdaRound layer op offers no columns (its weight_index is empty)");
}

namespace {

// d loss / d soft weight of one step, where loss = sum over channels, mean
// over the step's output values of (f(soft x + b) - f(w x + b))^2.
class StepGradient {
 public:
  virtual ~StepGradient() = default;
  virtual void compute(std::span<const float> soft, std::span<const int64_t> batch, std::mt19937_64& rng,
                       std::span<float> grad) = 0;
};

// The reference: forward/backward over every output value of the step's
// samples, against targets computed once.
class WholeSampleGradient final : public StepGradient {
 public:
  WholeSampleGradient(std::span<const float> weight, std::span<const float> bias, const AdaLayerOp& op,
                      const FollowingActivation& f, int64_t samples, int64_t batch_size)
      : bias_(bias), op_(op), f_(f), per_sample_(op.output_channels() * op.positions()) {
    target_.resize(static_cast<size_t>(samples * per_sample_));
    std::vector<int64_t> chunk;
    std::vector<float> out;
    for (int64_t start = 0; start < samples; start += batch_size) {
      chunk.resize(static_cast<size_t>(std::min(batch_size, samples - start)));
      std::iota(chunk.begin(), chunk.end(), start);
      layer_output(weight, bias, op, f, chunk, out);
      std::copy(out.begin(), out.end(), target_.begin() + start * per_sample_);
    }
  }
  void compute(std::span<const float> soft, std::span<const int64_t> batch, std::mt19937_64&,
               std::span<float> grad) override {
    op_.forward(soft, batch, y_);
    const int64_t channels = op_.output_channels();
    const int64_t positions = op_.positions();
    const float norm = 2.0f / static_cast<float>(static_cast<int64_t>(batch.size()) * positions);
    for (size_t b = 0; b < batch.size(); ++b) {
      const float* t = target_.data() + batch[b] * per_sample_;
      float* yb = y_.data() + b * per_sample_;
      for (int64_t j = 0; j < per_sample_; ++j) {
        const float pre = yb[j] + (bias_.empty() ? 0.0f : bias_[static_cast<size_t>(j / positions % channels)]);
        const float a = activate(f_, pre);
        yb[j] = norm * (a - t[j]) * activation_slope(f_, pre, a);
      }
    }
    std::fill(grad.begin(), grad.end(), 0.0f);
    op_.backward(y_, batch, grad);
  }

 private:
  std::span<const float> bias_;
  const AdaLayerOp& op_;
  const FollowingActivation& f_;
  int64_t per_sample_;
  std::vector<float> target_, y_;
};

// The fast loop: the step's output values (all, or `columns` drawn at random)
// as columns of one matrix product per group, so that a step costs
// 3 * weights * columns multiply-adds whatever the feature-map size; the
// float targets are recomputed on the same columns instead of stored.
class ColumnGradient final : public StepGradient {
 public:
  ColumnGradient(std::span<const float> weight, std::span<const float> bias, const AdaLayerOp& op,
                 const FollowingActivation& f, int64_t columns)
      : bias_(bias), op_(op), f_(f), columns_(columns) {
    const std::span<const int64_t> index = op.weight_index();
    float_weight_.resize(index.size());
    for (size_t i = 0; i < index.size(); ++i) float_weight_[i] = weight[static_cast<size_t>(index[i])];
  }
  void compute(std::span<const float> soft, std::span<const int64_t> batch, std::mt19937_64& rng,
               std::span<float> grad) override {
    const int64_t positions = op_.positions();
    const auto all = static_cast<int64_t>(batch.size()) * positions;
    const int64_t n = columns_ > 0 ? std::min(columns_, all) : all;
    const int64_t groups = op_.groups(), rows = op_.rows(), channels = op_.output_channels();
    const int64_t per_group = channels / groups;
    const std::span<const int64_t> index = op_.weight_index();

    // x[(group * rows + r) * n + j]: column j of every group.
    x_.resize(static_cast<size_t>(groups * rows * n));
    column_.resize(static_cast<size_t>(groups * rows));
    std::uniform_int_distribution<int64_t> pick(0, all - 1);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t c = n == all ? j : pick(rng);
      op_.column(batch[static_cast<size_t>(c / positions)], c % positions, column_.data());
      for (int64_t q = 0; q < groups * rows; ++q) x_[static_cast<size_t>(q * n + j)] = column_[static_cast<size_t>(q)];
    }
    soft_.resize(index.size());
    for (size_t i = 0; i < index.size(); ++i) soft_[i] = soft[static_cast<size_t>(index[i])];
    zs_.resize(static_cast<size_t>(channels * n));
    zf_.resize(zs_.size());
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t w0 = g * per_group * rows, z0 = g * per_group * n;
      matmul(soft_.data() + w0, x_.data() + g * rows * n, zs_.data() + z0, per_group, rows, n);
      matmul(float_weight_.data() + w0, x_.data() + g * rows * n, zf_.data() + z0, per_group, rows, n);
    }
    const float norm = 2.0f / static_cast<float>(n);
    for (int64_t c = 0; c < channels; ++c) {
      const float b = bias_.empty() ? 0.0f : bias_[static_cast<size_t>(c)];
      for (int64_t j = 0; j < n; ++j) {
        const size_t i = static_cast<size_t>(c * n + j);
        const float pre = zs_[i] + b;
        const float a = activate(f_, pre);
        zs_[i] = norm * (a - activate(f_, zf_[i] + b)) * activation_slope(f_, pre, a);
      }
    }
    // grad = dz x^T per group, as a product with x transposed ([n, rows]).
    xt_.resize(static_cast<size_t>(n * rows));
    grad_matrix_.resize(index.size());
    for (int64_t g = 0; g < groups; ++g) {
      const float* xg = x_.data() + g * rows * n;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) xt_[static_cast<size_t>(j * rows + r)] = xg[r * n + j];
      matmul(zs_.data() + g * per_group * n, xt_.data(), grad_matrix_.data() + g * per_group * rows, per_group, n,
             rows);
    }
    std::fill(grad.begin(), grad.end(), 0.0f);
    for (size_t i = 0; i < index.size(); ++i) grad[static_cast<size_t>(index[i])] += grad_matrix_[i];
  }

 private:
  std::span<const float> bias_;
  const AdaLayerOp& op_;
  const FollowingActivation& f_;
  int64_t columns_;
  std::vector<float> float_weight_, soft_, x_, column_, zs_, zf_, xt_, grad_matrix_;
};

}  // namespace

std::vector<int32_t> adaround(std::span<const float> weight, const ChannelMap& channels, std::span<const float> scale,
                              QuantFormat format, std::span<const float> bias, const AdaLayerOp& op,
                              const FollowingActivation& activation, const AdaRoundSettings& settings) {
  const size_t n = weight.size();
  const auto lo = static_cast<float>(format.min());
  const auto hi = static_cast<float>(format.max());
  std::vector<float> base(n), step(n), alpha(n);
  for (size_t i = 0; i < n; ++i) {
    const float s = scale.size() == 1 ? scale[0] : scale[static_cast<size_t>(channels.channel_of(static_cast<int64_t>(i)))];
    const float ratio = weight[i] / s;
    base[i] = std::floor(ratio);
    step[i] = s;
    // h(alpha) starts at the fractional part, i.e. at the float weight.
    const double p = (static_cast<double>(ratio - base[i]) - kGamma) / (kZeta - kGamma);
    alpha[i] = static_cast<float>(std::log(p / (1.0 - p)));
  }
  if (settings.num_iteration == 0) return round_hard(base, alpha, lo, hi);

  const int64_t per_sample = op.output_channels() * op.positions();
  const bool by_columns = !op.weight_index().empty();
  // The reference path keeps every sample's targets: beyond this many floats
  // only the first samples are used.
  const int64_t samples =
      by_columns ? op.samples()
                 : std::max<int64_t>(1, std::min(op.samples(), kMaxTargetValues / std::max<int64_t>(per_sample, 1)));
  const int64_t batch_size = std::min(settings.batch_size, samples);
  std::unique_ptr<StepGradient> loss_gradient;
  if (by_columns)
    loss_gradient = std::make_unique<ColumnGradient>(weight, bias, op, activation, settings.columns);
  else
    loss_gradient = std::make_unique<WholeSampleGradient>(weight, bias, op, activation, samples, batch_size);

  std::mt19937_64 rng(settings.seed);
  std::vector<int64_t> order(static_cast<size_t>(samples));
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> soft(n), sig(n), grad(n), m(n, 0.0f), v(n, 0.0f);
  const double warm = settings.warm_start * static_cast<double>(settings.num_iteration);
  constexpr float kBeta1 = 0.9f, kBeta2 = 0.999f, kEps = 1e-8f;
  for (int64_t iter = 0; iter < settings.num_iteration; ++iter) {
    // batch_size distinct random samples (partial Fisher-Yates).
    for (int64_t k = 0; k < batch_size; ++k) {
      std::uniform_int_distribution<int64_t> pick(k, samples - 1);
      std::swap(order[static_cast<size_t>(k)], order[static_cast<size_t>(pick(rng))]);
    }
    const std::span<const int64_t> batch(order.data(), static_cast<size_t>(batch_size));
    // The per-weight passes cost as much as the products on a big layer:
    // float math, the sigmoid computed once, slices over threads.
    for_each_slice(n, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        sig[i] = 1.0f / (1.0f + std::exp(-alpha[i]));
        const float h = std::clamp(sig[i] * kStretch + kLow, 0.0f, 1.0f);
        soft[i] = std::clamp(base[i] + h, lo, hi) * step[i];
      }
    });
    loss_gradient->compute(soft, batch, rng, grad);

    const bool regularize = static_cast<double>(iter) >= warm;
    const double beta =
        settings.beta_end + 0.5 * (settings.beta_start - settings.beta_end) *
                                (1.0 + std::cos(M_PI * (static_cast<double>(iter) - warm) /
                                                (static_cast<double>(settings.num_iteration) - warm)));
    const auto c1 = static_cast<float>(1.0 - std::pow(kBeta1, static_cast<double>(iter + 1)));
    const auto c2 = static_cast<float>(1.0 - std::pow(kBeta2, static_cast<double>(iter + 1)));
    const auto reg = static_cast<float>(settings.reg_param * 2.0 * beta);
    const auto power = static_cast<float>(beta - 1.0);
    const auto lr = static_cast<float>(settings.learning_rate);
    for_each_slice(n, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        const float raw = sig[i] * kStretch + kLow;
        float g = 0.0f;  // the clamp of h stops the gradient
        if (raw > 0.0f && raw < 1.0f) {
          const float q = base[i] + raw;
          // The clamp to the integer range passes the gradient only inside.
          float dh = (q >= lo && q <= hi) ? grad[i] * step[i] : 0.0f;
          if (regularize) {
            const float u = 2.0f * raw - 1.0f;
            dh -= reg * std::pow(std::fabs(u), power) * (u > 0.0f ? 1.0f : (u < 0.0f ? -1.0f : 0.0f));
          }
          g = dh * kStretch * sig[i] * (1.0f - sig[i]);
        }
        m[i] = kBeta1 * m[i] + (1.0f - kBeta1) * g;
        v[i] = kBeta2 * v[i] + (1.0f - kBeta2) * g * g;
        alpha[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + kEps);
      }
    });
  }

  return round_hard(base, alpha, lo, hi);
}

double reconstruction_error(std::span<const float> a, std::span<const float> b, std::span<const float> bias,
                            const AdaLayerOp& op, const FollowingActivation& activation) {
  double total = 0.0;
  std::vector<int64_t> one(1);
  std::vector<float> ya, yb;
  for (int64_t s = 0; s < op.samples(); ++s) {
    one[0] = s;
    layer_output(a, bias, op, activation, one, ya);
    layer_output(b, bias, op, activation, one, yb);
    for (size_t i = 0; i < ya.size(); ++i) total += static_cast<double>(ya[i] - yb[i]) * (ya[i] - yb[i]);
  }
  return total;
}

}  // namespace amct
