#include "amct/calibrator.h"

#include <cmath>
#include <exception>

#include "amct/calib/parallel_slices.h"
#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/quant_format.h"
#include "amct/weights_fingerprint.h"

namespace amct {

float round_to_fp16_precision(float value) {
  auto via_half = [](float x) { return static_cast<float>(static_cast<_Float16>(x)); };
  constexpr float kHalfMinNormal = 6.103515625e-05f;  // 2^-14
  constexpr float kHalfMax = 65504.0f;
  if (value >= kHalfMinNormal && value <= kHalfMax) return via_half(value);
  const float root = via_half(std::sqrt(value));
  return root * root;
}

namespace {

std::vector<CalibrationTarget> input_targets(const std::vector<std::string>& layers) {
  std::vector<CalibrationTarget> targets;
  for (const auto& name : layers) targets.push_back({name, TensorRole::kInput, {}});
  return targets;
}

}  // namespace

Calibrator::Calibrator(std::string record_file, ScaleOffsetRecord record, const QuantConfig& config,
                       std::vector<CalibrationTarget> targets, std::string weights_fingerprint)
    : record_file_(std::move(record_file)),
      weights_fingerprint_(std::move(weights_fingerprint)),
      record_(std::move(record)),
      batch_num_(config.batch_num),
      force_fp16_(config.fakequant_precision_mode == "FORCE_FP16_QUANT") {
  for (auto& target : targets) {
    const std::string& config_layer = target.config_layer.empty() ? target.layer : target.config_layer;
    const LayerQuantConfig* layer = config.find_layer(config_layer);
    if (!layer) fail(ErrorCode::kRuntime, "layer '" + config_layer + "' has no entry in the quantization config");
    for (const Layer& existing : layers_)
      if (existing.target.layer == target.layer && existing.target.role == target.role)
        invalid("layer '" + target.layer + "': its " + tensor_role_name(target.role) + " is listed twice");
    Layer state;
    state.target = std::move(target);
    state.params = layer->activation;
    state.collector = make_activation_collector(layer->activation, batch_num_);
    layers_.push_back(std::move(state));
  }
}

Calibrator::Calibrator(std::string record_file, ScaleOffsetRecord record, const QuantConfig& config,
                       const std::vector<std::string>& layers, std::string weights_fingerprint)
    : Calibrator(std::move(record_file), std::move(record), config, input_targets(layers),
                 std::move(weights_fingerprint)) {}

size_t Calibrator::index_of(const std::string& layer, TensorRole role) const {
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i].target.layer == layer && layers_[i].target.role == role) return i;
  invalid("layer '" + layer + "': its " + tensor_role_name(role) + " is not calibrated");
}

int64_t Calibrator::batches_seen(size_t index) const {
  std::lock_guard lock(mutex_);
  return layers_.at(index).seen;
}

bool Calibrator::finished() const {
  std::lock_guard lock(mutex_);
  return written_;
}

size_t Calibrator::state_bytes() const {
  std::lock_guard lock(mutex_);
  size_t total = 0;
  for (const auto& layer : layers_)
    if (layer.collector) total += layer.collector->state_bytes();
  return total;
}

bool Calibrator::observe(size_t index, std::span<const float> activation) {
  std::lock_guard lock(mutex_);
  Layer& layer = layers_.at(index);
  if (layer.seen >= batch_num_) {
    // A record write that failed (the error was raised then) is retried, so
    // fixing the directory and running one more batch finishes calibration.
    if (written_ || completed_ < layers_.size()) return false;
    finish_locked();
    return true;
  }
  try {
    layer.collector->observe(activation);
  } catch (const Error& e) {
    fail(e.code(), "layer '" + layer.target.layer + "' (" + tensor_role_name(layer.target.role) +
                       "), calibration batch " + std::to_string(layer.seen + 1) + ": " + e.what());
  }
  if (++layer.seen < batch_num_) return false;
  // Every collector keeps its statistics until all tensors have seen their
  // batches: then the scales are computed at once, the tensors in parallel.
  if (++completed_ < layers_.size()) return false;
  finish_locked();
  return true;
}

void Calibrator::write_record() {
  std::lock_guard lock(mutex_);
  for (const auto& layer : layers_)
    if (layer.seen < batch_num_)
      fail(ErrorCode::kRuntime, "record file '" + record_file_ + "' cannot be written yet: layer '" +
                                    layer.target.layer + "' (" + tensor_role_name(layer.target.role) + ") has seen " +
                                    std::to_string(layer.seen) + " of " + std::to_string(batch_num_) + " batches");
  finish_locked();
}

void Calibrator::finish_locked() {
  finalize_locked();
  write_record_locked();
}

void Calibrator::finalize_locked() {
  // The search for each scale (IFMR's candidates, HFMG's destination grids)
  // takes milliseconds per tensor and tensors are independent; the OpenMP
  // team is the one torch's ops run on. Errors are kept per tensor and the
  // first in record order is raised.
  std::vector<std::exception_ptr> errors(layers_.size());
  run_each(layers_.size(), [&](size_t i) {
    Layer& layer = layers_[i];
    if (!layer.collector) return;
    try {
      layer.result = layer.collector->finalize();
      layer.collector.reset();  // its statistics are no longer needed
    } catch (...) {
      errors[i] = std::current_exception();
    }
  });
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (!errors[i]) continue;
    const Layer& layer = layers_[i];
    try {
      std::rethrow_exception(errors[i]);
    } catch (const Error& e) {
      fail(e.code(), "layer '" + layer.target.layer + "' (" + tensor_role_name(layer.target.role) +
                         "), calibration batch " + std::to_string(batch_num_) + " (the last; computing the scale from all " +
                         std::to_string(batch_num_) + " batches): " + e.what());
    }
  }
}

void Calibrator::write_record_locked() {
  std::vector<TensorRange> extra_ranges;
  for (const auto& layer : layers_) {
    const float scale = force_fp16_ ? round_to_fp16_precision(layer.result.scale) : layer.result.scale;
    if (layer.target.role == TensorRole::kOutput || layer.target.role == TensorRole::kTensor) {
      extra_ranges.push_back({layer.target.layer, layer.target.role, scale, layer.result.offset, layer.params.num_bits});
      continue;
    }
    SingleLayerRecord* entry = find_record(record_, layer.target.layer);
    if (!entry)
      fail(ErrorCode::kRuntime,
           "record file '" + record_file_ + "' lost the entry of layer '" + layer.target.layer + "'");
    if (layer.target.role == TensorRole::kRecurrent) {
      entry->set_scale_h(scale);
      entry->set_offset_h(layer.result.offset);
      continue;
    }
    entry->set_scale_d(scale);
    entry->set_offset_d(layer.result.offset);
    entry->set_act_type(QuantFormat::signed_bits(layer.params.num_bits).name());
  }
  // One set: a record with activation factors means calibration is
  // complete, so it must not exist without its sidecars.
  FileSet files;
  files.stage(record_file_, record_to_text(record_), "record file");
  if (!extra_ranges.empty())
    files.stage(tensor_ranges_path(record_file_), tensor_ranges_json(extra_ranges), "tensor ranges file");
  if (!weights_fingerprint_.empty())
    files.stage(record_sidecar_path(record_file_), record_sidecar_json(weights_fingerprint_), "record sidecar");
  files.commit();
  written_ = true;
}

}  // namespace amct
