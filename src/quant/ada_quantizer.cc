#include "amct/ada_quantizer.h"

#include "amct/calib/adaround.h"
#include "amct/calib/arq.h"
#include "amct/calib/kl_weight_scale.h"

namespace amct {
namespace {

// AMCT's ada_quantize: KL scales (or, opted in, ARQ's), then AdaRound chooses
// each weight's rounding direction on the layer's inputs.
class AdaQuantizer final : public WeightQuantizer {
 public:
  AdaQuantizer(const WeightQuantParams& params, const AdaRoundLayer& layer) : layer_(layer) {
    settings_.num_iteration = params.num_iteration;
    settings_.reg_param = params.reg_param;
    settings_.warm_start = params.warm_start;
    settings_.beta_start = params.beta_range_start;
    settings_.beta_end = params.beta_range_end;
    arq_scale_ = params.init_scale == "arq";
  }
  QuantizedWeight quantize(std::span<const float> weight, const ChannelMap& channels, bool channel_wise,
                           QuantFormat format) const override {
    QuantizedWeight out;
    out.scale = arq_scale_ ? arq_quantize(weight, channels, channel_wise, format.bits()).scale
                           : kl_weight_scales(weight, channels, channel_wise, format.bits());
    out.offset.assign(out.scale.size(), 0);
    // Checks the weights are finite before the optimisation reads them.
    integerize_weight(weight, channels, out.scale, format, "", "weight");
    out.integers = adaround(weight, channels, out.scale, format, layer_.bias, *layer_.op, layer_.activation, settings_);
    return out;
  }

 private:
  AdaRoundLayer layer_;
  AdaRoundSettings settings_;
  bool arq_scale_ = false;
};

}  // namespace

std::unique_ptr<WeightQuantizer> make_ada_quantizer(const WeightQuantParams& params, const AdaRoundLayer& layer) {
  return std::make_unique<AdaQuantizer>(params, layer);
}

}  // namespace amct
