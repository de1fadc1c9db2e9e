#include "amct/calib/dmq_balance.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>

#include "amct/error.h"

namespace amct {
namespace {

constexpr float kEps = FLT_EPSILON;

int64_t product(const std::vector<int64_t>& dims, size_t from) {
  int64_t n = 1;
  for (size_t i = from; i < dims.size(); ++i) {
    if (dims[i] <= 0)
      invalid("weight dimension " + std::to_string(i) + " is " + std::to_string(dims[i]) + "; expected a positive size");
    if (__builtin_mul_overflow(n, dims[i], &n)) invalid("weight dims: their product overflows int64");
  }
  return n;
}

void check_sizes(size_t values, int64_t channels, int64_t inner, size_t maxima) {
  if (channels <= 0 || inner <= 0 || maxima != static_cast<size_t>(channels) ||
      values % (static_cast<size_t>(channels) * static_cast<size_t>(inner)) != 0)
    invalid("an activation of " + std::to_string(values) + " values cannot be viewed as [outer, " +
            std::to_string(channels) + ", " + std::to_string(inner) + "]");
}

}  // namespace

InputChannelMap InputChannelMap::for_weight(WeightLayout layout, const std::vector<int64_t>& dims, int64_t groups,
                                            bool trans_b) {
  if (layout == WeightLayout::kNone || layout == WeightLayout::kGates)
    invalid("DMQ balancing needs a Conv, ConvTranspose, Gemm or MatMul weight");
  if (dims.size() < 2) invalid("weight of rank " + std::to_string(dims.size()) + "; expected at least 2");
  if (groups <= 0) invalid("group is " + std::to_string(groups) + "; expected a positive value");
  InputChannelMap map;
  map.numel_ = product(dims, 0);
  switch (layout) {
    case WeightLayout::kOutFirst:
      // [Cout, Cin/g, k...]
      if (dims[0] % groups != 0)
        invalid("weight dimension 0 (" + std::to_string(dims[0]) + ") is not divisible by group " +
                std::to_string(groups));
      map.pattern_ = Pattern::kGroupedConv;
      map.inner_ = product(dims, 2);
      map.group_in_ = dims[1];
      map.group_out_ = dims[0] / groups;
      map.channels_ = dims[1] * groups;
      break;
    case WeightLayout::kGemm:
      if (trans_b) {
        // [Cout, Cin]
        map.pattern_ = Pattern::kTrailing;
        map.channels_ = dims[1];
        break;
      }
      [[fallthrough]];
    case WeightLayout::kDeconv:  // [Cin, Cout/g, k...]
    case WeightLayout::kInOut:   // [Cin, Cout]
      map.channels_ = dims[0];
      map.inner_ = map.numel_ / dims[0];
      break;
    case WeightLayout::kNone:
    case WeightLayout::kGates:
      break;
  }
  return map;
}

int64_t InputChannelMap::channel_of(int64_t element) const {
  switch (pattern_) {
    case Pattern::kLeading: return element / inner_;
    case Pattern::kTrailing: return element % channels_;
    case Pattern::kGroupedConv: {
      const int64_t out = element / (group_in_ * inner_);
      const int64_t local_in = (element / inner_) % group_in_;
      return (out / group_out_) * group_in_ + local_in;
    }
  }
  return 0;
}

std::vector<float> weight_channel_abs_max(std::span<const float> weight, const InputChannelMap& map) {
  if (static_cast<int64_t>(weight.size()) != map.numel())
    invalid("a weight of " + std::to_string(weight.size()) + " values does not match its dims (" +
            std::to_string(map.numel()) + " values)");
  std::vector<float> out(static_cast<size_t>(map.channels()), 0.0f);
  for (size_t e = 0; e < weight.size(); ++e) {
    float& m = out[static_cast<size_t>(map.channel_of(static_cast<int64_t>(e)))];
    m = std::max(m, std::fabs(weight[e]));
  }
  return out;
}

bool accumulate_channel_abs_max(std::span<const float> activation, int64_t channels, int64_t inner,
                                std::span<float> abs_max) {
  check_sizes(activation.size(), channels, inner, abs_max.size());
  const size_t c_count = static_cast<size_t>(channels);
  const size_t run = static_cast<size_t>(inner);
  const size_t outer = activation.size() / (c_count * run);
  // x * 0 is 0 for finite x and NaN for inf or NaN, and the sum keeps a NaN:
  // one vectorizable check instead of a branch per element. std::max would
  // drop a NaN silently.
  float poison = 0.0f;
  const float* x = activation.data();
  if (run == 1) {
    // Channels last (Linear): each row updates every channel's maximum.
    for (size_t o = 0; o < outer; ++o, x += c_count)
      for (size_t c = 0; c < c_count; ++c) {
        abs_max[c] = std::max(abs_max[c], std::fabs(x[c]));
        poison += x[c] * 0.0f;
      }
  } else {
    for (size_t o = 0; o < outer; ++o)
      for (size_t c = 0; c < c_count; ++c, x += run) {
        float m = abs_max[c];
        for (size_t i = 0; i < run; ++i) {
          m = std::max(m, std::fabs(x[i]));
          poison += x[i] * 0.0f;
        }
        abs_max[c] = m;
      }
  }
  return poison == 0.0f;
}

bool accumulate_channel_abs_max_reference(std::span<const float> activation, int64_t channels, int64_t inner,
                                          std::span<float> abs_max) {
  check_sizes(activation.size(), channels, inner, abs_max.size());
  bool finite = true;
  for (size_t e = 0; e < activation.size(); ++e) {
    const float v = activation[e];
    if (!std::isfinite(v)) finite = false;
    const size_t c = (e / static_cast<size_t>(inner)) % static_cast<size_t>(channels);
    if (std::fabs(v) > abs_max[c]) abs_max[c] = std::fabs(v);
  }
  return finite;
}

std::vector<float> balance_factors(std::span<const float> activation_max, std::span<const float> weight_max,
                                   float migration_strength) {
  if (activation_max.size() != weight_max.size())
    invalid("DMQ: " + std::to_string(activation_max.size()) + " input-channel maxima of the activation but " +
            std::to_string(weight_max.size()) + " of the weight");
  const size_t n = activation_max.size();
  const float alpha = migration_strength;
  const float beta = 1.0f - migration_strength;
  std::vector<float> s(n, 0.0f);
  for (size_t c = 0; c < n; ++c)
    if (weight_max[c] >= kEps) s[c] = std::pow(activation_max[c], alpha) / std::pow(weight_max[c], beta);

  // The channels whose formula factor is usable set the targets that the
  // degenerate channels are brought to.
  bool any_valid = false;
  float balanced_weight = 0.0f;      // max_j w_j * s_j
  float balanced_activation = 0.0f;  // max_j a_j / s_j
  for (size_t j = 0; j < n; ++j) {
    if (!(s[j] >= kEps)) continue;
    any_valid = true;
    balanced_weight = std::max(balanced_weight, weight_max[j] * s[j]);
    balanced_activation = std::max(balanced_activation, activation_max[j] / s[j]);
  }
  if (!any_valid) return std::vector<float>(n, 1.0f);
  for (size_t c = 0; c < n; ++c) {
    const bool no_activation = activation_max[c] < kEps;
    const bool no_weight = weight_max[c] < kEps;
    if (no_activation && no_weight) {
      s[c] = 1.0f;
    } else if (no_activation) {
      s[c] = balanced_weight / weight_max[c];
    } else if (no_weight) {
      s[c] = activation_max[c] / balanced_activation;
    }
  }
  return s;
}

void check_balance_factors(std::span<const float> factors, const std::string& layer) {
  for (size_t c = 0; c < factors.size(); ++c) {
    const float s = factors[c];
    if (s > kEps && s < 1.0f / kEps) continue;
    char value[32];
    std::snprintf(value, sizeof value, "%.9g", static_cast<double>(s));
    fail(ErrorCode::kRuntime, "layer '" + layer +
                                  "': The tensor balance factor is less than FLT_EPSILON or larger than "
                                  "1/FLT_EPSILON! (input channel " +
                                  std::to_string(c) + ": " + value + ")");
  }
}

void scale_weight_input_channels(std::span<float> weight, const InputChannelMap& map, std::span<const float> factors) {
  if (static_cast<int64_t>(weight.size()) != map.numel() || static_cast<int64_t>(factors.size()) != map.channels())
    invalid("DMQ: " + std::to_string(factors.size()) + " balance factors for a weight with " +
            std::to_string(map.channels()) + " input channels");
  for (size_t e = 0; e < weight.size(); ++e)
    weight[e] *= factors[static_cast<size_t>(map.channel_of(static_cast<int64_t>(e)))];
}

void divide_input_channels(std::span<float> activation, int64_t channels, int64_t inner,
                           std::span<const float> factors) {
  check_sizes(activation.size(), channels, inner, factors.size());
  const size_t c_count = static_cast<size_t>(channels);
  const size_t run = static_cast<size_t>(inner);
  float* x = activation.data();
  for (size_t o = 0; o < activation.size() / (c_count * run); ++o)
    for (size_t c = 0; c < c_count; ++c, x += run)
      for (size_t i = 0; i < run; ++i) x[i] /= factors[c];
}

}  // namespace amct
