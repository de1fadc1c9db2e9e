// The activation side of calibration (docs/amct-reference.md#calibration-model):
// one streaming collector per calibrated tensor, keyed by (layer, role). When
// every tensor has seen batch_num batches the scales are computed and written:
// a layer's input as scale_d/offset_d/act_type and its recurrent state as
// scale_h/offset_h in the record, other roles (layer outputs) in the tensor
// ranges sidecar beside it, and quantize_model's weights fingerprint in the
// record's own sidecar (weights_fingerprint.h), all as one set of files.
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
  std::string layer;  // for kTensor, the tensor's name in the modified ONNX
  TensorRole role = TensorRole::kInput;
  // The layer whose activation config calibrates it; empty: `layer`. A
  // kTensor target belongs to no layer of the config.
  std::string config_layer;
};

class Calibrator {
 public:
  // `targets` in record order; `record` holds the weight factors already
  // written. Each target is calibrated with its layer's activation config.
  // A non-empty `weights_fingerprint` is rewritten beside the record with it.
  Calibrator(std::string record_file, ScaleOffsetRecord record, const QuantConfig& config,
             std::vector<CalibrationTarget> targets, std::string weights_fingerprint = {});
  // Every layer's input, the targets of AMCT's calibration.
  Calibrator(std::string record_file, ScaleOffsetRecord record, const QuantConfig& config,
             const std::vector<std::string>& layers, std::string weights_fingerprint = {});

  size_t layer_count() const { return layers_.size(); }
  const std::string& layer_name(size_t index) const { return layers_.at(index).target.layer; }
  TensorRole role(size_t index) const { return layers_.at(index).target.role; }
  // The index of (layer, role); throws kInvalidArgument if it is not a target.
  size_t index_of(const std::string& layer, TensorRole role) const;
  int64_t batch_num() const { return batch_num_; }
  int64_t batches_seen(size_t index) const;
  // True once the record file has been written.
  bool finished() const;

  // Feeds one batch of layer `index`'s input. Batches after batch_num are
  // ignored, except that while the record is not written (its write failed:
  // directory removed, disk full) each one retries the write. Returns true
  // when this call wrote the record file.
  bool observe(size_t index, std::span<const float> activation);

  // Writes the record file (and its sidecars) now; throws kRuntime naming a
  // tensor that has not seen batch_num batches yet.
  void write_record();

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

  // Computes the scales of the tensors not done yet, then writes the record.
  void finish_locked();
  void finalize_locked();
  void write_record_locked();

  std::string record_file_;
  std::string weights_fingerprint_;
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
