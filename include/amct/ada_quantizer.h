// wts_algo ada_quantize: KL initial scales, then AdaRound
// (docs/amct-reference.md#adaround). Reached through make_weight_quantizer.
#pragma once

#include <memory>

#include "amct/weight_quant.h"

namespace amct {

std::unique_ptr<WeightQuantizer> make_ada_quantizer(const WeightQuantParams& params, const AdaRoundLayer& layer);

}  // namespace amct
