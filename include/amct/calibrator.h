// The activation side of calibration (docs/amct-reference.md#calibration-model):
// one streaming collector per calibrated tensor, keyed by (layer, role). When
// every tensor has seen batch_num batches the scales are computed and written:
// a layer's input as scale_d/offset_d/act_type and its recurrent state as
// scale_h/offset_h in the record, other roles (layer outputs) in the tensor
// ranges sidecar beside it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "amct/calib/activation_collector.h"
#include "amct/config.h"
#include "amct/record.h"
#include "amct/tensor_ranges.h"

namespace amct {

struct CalibrationTarget {
  std::string layer;
  TensorRole role = TensorRole::kInput;
};

class Calibrator {
 public:
  // `targets` in record order; `record` holds the weight factors already
  // written. Each target is calibrated with its layer's activation config.
  Calibrator(std::string record_file, ScaleOffsetRecord record, const QuantConfig& config,
             std::vector<CalibrationTarget> targets);
  // Every layer's input, the targets of AMCT's calibration.
  Calibrator(std::string record_file, ScaleOffsetRecord record, const QuantConfig& config,
             const std::vector<std::string>& layers);

  size_t layer_count() const { return layers_.size(); }
  const std::string& layer_name(size_t index) const { return layers_.at(index).target.layer; }
  TensorRole role(size_t index) const { return layers_.at(index).target.role; }
  // The index of (layer, role); throws kInvalidArgument if it is not a target.
  size_t index_of(const std::string& layer, TensorRole role) const;
  int64_t batch_num() const { return batch_num_; }
  int64_t batches_seen(size_t index) const;
  bool finished() const;

  // Feeds one batch of layer `index`'s input. Batches after batch_num are
  // ignored. Returns true when this call completed calibration and the
  // record file was written.
  bool observe(size_t index, std::span<const float> activation);

  // Total bytes of collector state (the memory benchmark reads it).
  size_t state_bytes() const;

 private:
  struct Layer {
    CalibrationTarget target;
    ActivationQuantParams params;
    std::unique_ptr<ActivationCollector> collector;
    int64_t seen = 0;
    ScaleOffset result;
  };

  void write_record();

  std::string record_file_;
  ScaleOffsetRecord record_;
  int64_t batch_num_;
  bool force_fp16_;
  std::vector<Layer> layers_;
  size_t completed_ = 0;
  bool written_ = false;
  mutable std::mutex mutex_;
};

// Rounds a scale to float16 precision (FORCE_FP16_QUANT); values outside the
// float16 normal range are rounded through their square root, as AMCT does.
float round_to_fp16_precision(float value);

}  // namespace amct
