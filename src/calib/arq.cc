#include "amct/calib/arq.h"

#include <algorithm>
#include <limits>
#include <string>

#include "amct/calib/quant_math.h"
#include "amct/error.h"

namespace amct {

WeightScales arq_quantize(std::span<const float> weight, const ChannelMap& channels, bool channel_wise, int num_bits) {
  check_num_bits(num_bits);
  if (static_cast<int64_t>(weight.size()) != channels.numel() || weight.empty())
    invalid("a weight of " + std::to_string(weight.size()) + " values does not match its shape (" +
            std::to_string(channels.numel()) + " values)");
  const int64_t groups = channel_wise ? channels.channels() : 1;
  std::vector<float> lo(static_cast<size_t>(groups), std::numeric_limits<float>::infinity());
  std::vector<float> hi(static_cast<size_t>(groups), -std::numeric_limits<float>::infinity());
  for (size_t i = 0; i < weight.size(); ++i) {
    const auto g = static_cast<size_t>(channel_wise ? channels.channel_of(static_cast<int64_t>(i)) : 0);
    lo[g] = std::min(lo[g], weight[i]);
    hi[g] = std::max(hi[g], weight[i]);
  }
  WeightScales result;
  for (size_t g = 0; g < lo.size(); ++g) {
    const ScaleOffset so = calculate_scale_offset(hi[g], lo[g], /*asymmetric=*/false, num_bits);
    result.scale.push_back(so.scale);
    result.offset.push_back(so.offset);
  }
  return result;
}

WeightScales arq_quantize(std::span<const float> weight, int64_t rows, bool channel_wise, int num_bits) {
  return arq_quantize(weight, ChannelMap::rows(rows, static_cast<int64_t>(weight.size())), channel_wise, num_bits);
}

}  // namespace amct
