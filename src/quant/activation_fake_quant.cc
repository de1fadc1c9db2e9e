#include <algorithm>
#include <cmath>

#include "amct/error.h"
#include "amct/fake_quant.h"
#include "amct/weight_quant.h"

namespace amct {

void fake_quantize_activation(std::span<const float> input, std::span<float> output, const ActivationQuant& quant) {
  if (input.size() != output.size())
    invalid("fake_quantize_activation: input has " + std::to_string(input.size()) + " values, output " +
            std::to_string(output.size()));
  const float inverse = static_cast<float>(1.0 / static_cast<double>(quant.scale));
  const float offset = static_cast<float>(quant.offset);
  const float low = static_cast<float>(quant.format.min());
  const float high = static_cast<float>(quant.format.max());
  for (size_t i = 0; i < input.size(); ++i) {
    // std::nearbyint rounds half to even in the default rounding mode, as ONNX Round does.
    const float level = std::clamp(std::nearbyint(input[i] * inverse) + offset, low, high);
    output[i] = (level - offset) * quant.scale;
  }
}

LayerFakeQuant layer_fake_quant(const ScaleOffsetRecord& record, const std::string& layer,
                                std::span<const float> bias) {
  const SingleLayerRecord* entry = find_record(record, layer);
  if (!entry || !entry->has_scale_d())
    fail(ErrorCode::kRuntime, "cannot find scale_d of layer " + layer +
                                  " in record_file, please check data calibration process!");
  LayerFakeQuant out;
  out.input.scale = entry->scale_d();
  out.input.offset = entry->offset_d();
  const std::string& type = entry->has_dst_type() ? entry->dst_type() : entry->act_type();
  const auto format = QuantFormat::parse(type, {4, 8, 16});
  if (!format) invalid("layer " + layer + ": act_type \"" + type + "\" is not one of " + format_names({4, 8, 16}));
  out.input.format = *format;
  if (bias.empty()) return out;
  const std::vector<float> weight_scale(entry->scale_w().begin(), entry->scale_w().end());
  const std::vector<float> deq = dequant_scales(weight_scale, entry->scale_d());
  const std::vector<int32_t> integers = integerize_bias(bias, deq, layer);
  out.bias.resize(integers.size());
  for (size_t c = 0; c < integers.size(); ++c)
    out.bias[c] = static_cast<float>(integers[c]) * deq[deq.size() == 1 ? 0 : c];
  return out;
}

}  // namespace amct
