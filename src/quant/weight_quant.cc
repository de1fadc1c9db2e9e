#include "amct/weight_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "amct/ada_quantizer.h"
#include "amct/calib/arq.h"
#include "amct/calib/quant_math.h"
#include "amct/error.h"

namespace amct {
namespace {

float scale_for(std::span<const float> scale, const ChannelMap& channels, int64_t element) {
  return scale.size() == 1 ? scale[0] : scale[static_cast<size_t>(channels.channel_of(element))];
}

void check_scale_count(size_t count, const ChannelMap& channels, const std::string& layer) {
  if (count != 1 && static_cast<int64_t>(count) != channels.channels())
    invalid("layer '" + layer + "': " + std::to_string(count) + " weight scales; expected 1 or " +
            std::to_string(channels.channels()) + " (one per output channel)");
}

class ArqQuantizer final : public WeightQuantizer {
 public:
  QuantizedWeight quantize(std::span<const float> weight, const ChannelMap& channels, bool channel_wise,
                           QuantFormat format) const override {
    const WeightScales scales = arq_quantize(weight, channels, channel_wise, format.bits());
    QuantizedWeight out{scales.scale, scales.offset, {}};
    out.integers = integerize_weight(weight, channels, out.scale, format, "", "weight");
    return out;
  }

  // The factors depend on the float weight alone, so the weight can then be
  // overwritten without ever holding the integers.
  QuantizedWeight fake_quantize_in_place(std::span<float> weight, const ChannelMap& channels, bool channel_wise,
                                         QuantFormat format) const override {
    const WeightScales scales = arq_quantize(weight, channels, channel_wise, format.bits());
    fake_quantize_weight(weight, channels, scales.scale, format, "", "weight");
    return QuantizedWeight{scales.scale, scales.offset, {}};
  }
};

}  // namespace

std::unique_ptr<WeightQuantizer> make_weight_quantizer(const WeightQuantParams& params, const std::string& layer,
                                                       const AdaRoundLayer* ada) {
  if (params.wts_algo == "arq_quantize") return std::make_unique<ArqQuantizer>();
  if (params.wts_algo == "ada_quantize") {
    if (!ada || !ada->op)
      fail(ErrorCode::kRuntime, "layer '" + layer + "': ada_quantize needs the layer's inputs, and none were given");
    return make_ada_quantizer(params, *ada);
  }
  fail(ErrorCode::kRuntime,
       "layer '" + layer + "': wts_algo '" + params.wts_algo + "' is not supported; use 'arq_quantize' or 'ada_quantize'");
}

namespace {

// The one integerization loop: `store(i, q)` receives element i's integer q
// (in float, already clamped). The variants below differ only in where the
// integers go, so they cannot drift apart.
template <typename Store>
void integerize_each(std::span<const float> weight, const ChannelMap& channels, std::span<const float> scale,
                     QuantFormat format, const std::string& layer, const std::string& tensor, Store store) {
  if (static_cast<int64_t>(weight.size()) != channels.numel())
    invalid("layer '" + layer + "': weight '" + tensor + "' has " + std::to_string(weight.size()) +
            " values; its dims give " + std::to_string(channels.numel()));
  check_scale_count(scale.size(), channels, layer);
  const auto lo = static_cast<float>(format.min());
  const auto hi = static_cast<float>(format.max());
  for (size_t i = 0; i < weight.size(); ++i) {
    if (!std::isfinite(weight[i]))
      invalid("layer '" + layer + "': weight '" + tensor + "' contains inf or NaN at element " + std::to_string(i) +
              "; expected finite values");
    const float q = round_half_even(weight[i] / scale_for(scale, channels, static_cast<int64_t>(i)));
    store(i, std::clamp(q, lo, hi));
  }
}

}  // namespace

std::vector<int32_t> integerize_weight(std::span<const float> weight, const ChannelMap& channels,
                                       std::span<const float> scale, QuantFormat format, const std::string& layer,
                                       const std::string& tensor) {
  std::vector<int32_t> out(weight.size());
  integerize_each(weight, channels, scale, format, layer, tensor,
                  [&](size_t i, float q) { out[i] = static_cast<int32_t>(q); });
  return out;
}

std::string integerize_weight_bytes(std::span<const float> weight, const ChannelMap& channels,
                                    std::span<const float> scale, QuantFormat format, const std::string& layer,
                                    const std::string& tensor, int32_t shift) {
  std::string out(weight.size(), '\0');
  integerize_each(weight, channels, scale, format, layer, tensor, [&](size_t i, float q) {
    out[i] = static_cast<char>(static_cast<uint8_t>(static_cast<int32_t>(q) + shift));
  });
  return out;
}

void fake_quantize_weight(std::span<float> weight, const ChannelMap& channels, std::span<const float> scale,
                          QuantFormat format, const std::string& layer, const std::string& tensor) {
  // Element i is read before it is written, and by no later step.
  integerize_each(weight, channels, scale, format, layer, tensor, [&](size_t i, float q) {
    weight[i] = q * scale_for(scale, channels, static_cast<int64_t>(i));
  });
}

QuantizedWeight WeightQuantizer::fake_quantize_in_place(std::span<float> weight, const ChannelMap& channels,
                                                        bool channel_wise, QuantFormat format) const {
  QuantizedWeight out = quantize(weight, channels, channel_wise, format);
  for (size_t i = 0; i < weight.size(); ++i)
    weight[i] = static_cast<float>(out.integers[i]) * scale_for(out.scale, channels, static_cast<int64_t>(i));
  std::vector<int32_t>().swap(out.integers);
  return out;
}

std::vector<float> dequantize_weight(std::span<const int32_t> integers, const ChannelMap& channels,
                                     std::span<const float> scale) {
  std::vector<float> out(integers.size());
  for (size_t i = 0; i < integers.size(); ++i)
    out[i] = static_cast<float>(integers[i]) * scale_for(scale, channels, static_cast<int64_t>(i));
  return out;
}

std::vector<float> dequant_scales(std::span<const float> weight_scale, float data_scale) {
  std::vector<float> scales;
  scales.reserve(weight_scale.size());
  // The product of two float32 values is exact in double, so this equals
  // AMCT's float32 multiplication rounded once.
  for (float w : weight_scale)
    scales.push_back(static_cast<float>(static_cast<double>(w) * static_cast<double>(data_scale)));
  return scales;
}

std::vector<int32_t> integerize_bias(std::span<const float> bias, std::span<const float> dequant_scale,
                                     const std::string& layer) {
  if (dequant_scale.size() != 1 && dequant_scale.size() != bias.size())
    invalid("layer '" + layer + "': the bias has " + std::to_string(bias.size()) + " values; expected " +
            std::to_string(dequant_scale.size()) + ", one per output channel of scale_w");
  std::vector<int32_t> out(bias.size());
  for (size_t c = 0; c < bias.size(); ++c) {
    const double scale = dequant_scale[dequant_scale.size() == 1 ? 0 : c];
    const double q = round_half_even(static_cast<double>(bias[c]) / scale);
    if (!(q >= std::numeric_limits<int32_t>::min() && q <= std::numeric_limits<int32_t>::max()))
      fail(ErrorCode::kRuntime, "layer '" + layer + "': bias quantization failed: bias[" + std::to_string(c) +
                                    "] = " + std::to_string(bias[c]) + " divided by the dequant scale " +
                                    std::to_string(scale) + " does not fit in INT32");
    out[c] = static_cast<int32_t>(q);
  }
  return out;
}

}  // namespace amct
