#include "amct/calibrator.h"

#include <cmath>

#include "amct/error.h"

namespace amct {

float round_to_fp16_precision(float value) {
  auto via_half = [](float x) { return static_cast<float>(static_cast<_Float16>(x)); };
  constexpr float kHalfMinNormal = 6.103515625e-05f;  // 2^-14
  constexpr float kHalfMax = 65504.0f;
  if (value >= kHalfMinNormal && value <= kHalfMax) return via_half(value);
  const float root = via_half(std::sqrt(value));
  return root * root;
}

Calibrator::Calibrator(std::string record_file, ScaleOffsetRecord record, const QuantConfig& config,
                       const std::vector<std::string>& layers)
    : record_file_(std::move(record_file)),
      record_(std::move(record)),
      batch_num_(config.batch_num),
      force_fp16_(config.fakequant_precision_mode == "FORCE_FP16_QUANT") {
  for (const auto& name : layers) {
    const LayerQuantConfig* layer = config.find_layer(name);
    if (!layer) fail(ErrorCode::kRuntime, "layer '" + name + "' has no entry in the quantization config");
    Layer state;
    state.name = name;
    state.params = layer->activation;
    state.collector = make_activation_collector(layer->activation, batch_num_);
    layers_.push_back(std::move(state));
  }
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
  if (layer.seen >= batch_num_) return false;
  try {
    layer.collector->observe(activation);
  } catch (const Error& e) {
    fail(e.code(), "layer '" + layer.name + "', calibration batch " + std::to_string(layer.seen + 1) + ": " + e.what());
  }
  if (++layer.seen < batch_num_) return false;
  layer.result = layer.collector->finalize();
  layer.collector.reset();  // its statistics are no longer needed
  if (++completed_ < layers_.size()) return false;
  write_record();
  return true;
}

void Calibrator::write_record() {
  for (const auto& layer : layers_) {
    SingleLayerRecord* entry = find_record(record_, layer.name);
    if (!entry) fail(ErrorCode::kRuntime, "record file '" + record_file_ + "' lost the entry of layer '" + layer.name + "'");
    entry->set_scale_d(force_fp16_ ? round_to_fp16_precision(layer.result.scale) : layer.result.scale);
    entry->set_offset_d(layer.result.offset);
    entry->set_act_type("INT" + std::to_string(layer.params.num_bits));
  }
  write_record_file(record_file_, record_);
  written_ = true;
}

}  // namespace amct
