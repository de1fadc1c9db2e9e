// Streaming activation calibration: a collector sees one batch at a time and
// keeps bounded state (histograms, extremes), never the activations, so its
// memory does not grow with batch_num.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "amct/calib/quant_math.h"
#include "amct/config.h"

namespace amct {

class ActivationCollector {
 public:
  virtual ~ActivationCollector() = default;
  // One calibration batch, flattened. Throws kRuntime on inf/nan.
  virtual void observe(std::span<const float> batch) = 0;
  // The scale/offset after all batches (docs/amct-reference.md#ifmr, #hfmg).
  virtual ScaleOffset finalize() const = 0;
  // Bytes of state held, for the memory benchmark.
  virtual size_t state_bytes() const = 0;
};

// A collector for `params.act_algo`; `batch_num` lets it size its state.
std::unique_ptr<ActivationCollector> make_activation_collector(const ActivationQuantParams& params,
                                                               int64_t batch_num);

}  // namespace amct
