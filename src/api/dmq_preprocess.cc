#include "amct/dmq_preprocess.h"

#include <algorithm>

#include "amct/calib/dmq_balance.h"
#include "amct/config.h"
#include "amct/dmq_record.h"
#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/layer_graph.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"
#include "amct/quantize.h"
#include "amct/record.h"

namespace amct {
namespace {

std::string shape_text(std::span<const int64_t> shape) {
  std::string text;
  for (const int64_t d : shape) text += (text.empty() ? "" : ", ") + std::to_string(d);
  return "[" + text + "]";
}

// The [outer, channels, inner] view of a layer input: Linear inputs keep
// their channels last, convolution inputs at axis 1 (axis 0 when unbatched).
int64_t inner_size(const BalanceLayer& layer, std::span<const int64_t> shape) {
  const auto rank = static_cast<int64_t>(shape.size());
  int64_t axis = -1;
  if (layer.channels_last) {
    axis = rank - 1;
  } else if (rank == layer.weight_rank) {
    axis = 1;
  } else if (rank == layer.weight_rank - 1) {
    axis = 0;
  }
  if (axis < 0 || shape[static_cast<size_t>(axis)] != layer.channels())
    invalid("layer '" + layer.name + "': its input has shape " + shape_text(shape) + "; expected " +
            std::to_string(layer.channels()) + " input channels " +
            (layer.channels_last ? std::string("in the last dimension")
                                 : "at dimension 1 of a rank-" + std::to_string(layer.weight_rank) + " input"));
  int64_t inner = 1;
  for (int64_t i = axis + 1; i < rank; ++i) inner *= shape[static_cast<size_t>(i)];
  return inner;
}

}  // namespace

BalanceRecorder::BalanceRecorder(std::string record_file, std::vector<BalanceLayer> layers)
    : record_file_(std::move(record_file)) {
  for (auto& info : layers) {
    Layer layer;
    layer.activation_max.assign(info.weight_max.size(), 0.0f);
    layer.info = std::move(info);
    layers_.push_back(std::move(layer));
  }
}

bool BalanceRecorder::observed(size_t index) const {
  std::lock_guard lock(mutex_);
  return layers_.at(index).observed;
}

bool BalanceRecorder::finished() const {
  std::lock_guard lock(mutex_);
  return written_;
}

std::vector<float> BalanceRecorder::factors(size_t index) const {
  std::lock_guard lock(mutex_);
  return layers_.at(index).factors;
}

bool BalanceRecorder::observe(size_t index, std::span<const float> activation, std::span<const int64_t> shape) {
  if (index >= layers_.size())
    invalid("balancing layer index " + std::to_string(index) + " out of range (" + std::to_string(layers_.size()) +
            " layers)");
  const BalanceLayer& info = layers_[index].info;
  int64_t numel = 1;
  for (const int64_t d : shape) numel *= d;
  if (numel != static_cast<int64_t>(activation.size()))
    invalid("layer '" + info.name + "': an input of shape " + shape_text(shape) + " holds " +
            std::to_string(activation.size()) + " values");
  const int64_t inner = inner_size(info, shape);

  std::lock_guard lock(mutex_);
  if (written_) return false;
  Layer& layer = layers_[index];
  if (!layer.observed) {
    std::vector<float> maxima(layer.activation_max.size(), 0.0f);
    if (!accumulate_channel_abs_max(activation, info.channels(), inner, maxima))
      fail(ErrorCode::kRuntime, "layer '" + info.name +
                                    "': its input holds inf or NaN; DMQ balance factors need finite activations");
    layer.activation_max = std::move(maxima);
    layer.observed = true;
  }
  const bool complete = std::all_of(layers_.begin(), layers_.end(), [](const Layer& l) { return l.observed; });
  if (!complete) return false;
  write_record_locked();
  return true;
}

void BalanceRecorder::write_record_locked() {
  ScaleOffsetRecord record;
  std::vector<std::vector<float>> factors;
  for (const Layer& layer : layers_) {
    std::vector<float> s = balance_factors(layer.activation_max, layer.info.weight_max, layer.info.migration_strength);
    check_balance_factors(s, layer.info.name);
    auto* entry = record.add_record();
    entry->set_key(layer.info.name);
    for (float v : s) entry->mutable_value()->add_tensor_balance_factor(v);
    factors.push_back(std::move(s));
  }
  write_file_atomic(record_file_, record_to_text(record), "record file");
  for (size_t i = 0; i < layers_.size(); ++i) layers_[i].factors = std::move(factors[i]);
  written_ = true;
}

std::unique_ptr<BalanceRecorder> quantize_preprocess(const std::string& config_file, const std::string& record_file,
                                                     onnx::ModelProto exported, std::vector<ModuleInfo> modules,
                                                     std::vector<std::string>& notes) {
  check_output_file_name(record_file, "record_file");
  check_no_quantization_modules(modules);
  std::string config_text;
  PreparedModel prepared = prepare_model_for_config(std::move(exported), std::move(modules), config_file, config_text);
  onnx::GraphProto& graph = *prepared.model.mutable_graph();
  const QuantConfig config = parse_config_text(config_text, config_file, prepared.info);
  notes.insert(notes.end(), prepared.notes.begin(), prepared.notes.end());

  std::vector<const LayerQuantConfig*> dmq;
  for (const auto& layer : prepared.info.layers) {
    const LayerQuantConfig* c = config.find_layer(layer.name);
    if (c && c->quant_enable && c->dmq_balancer_param && layer.supported) dmq.push_back(c);
  }
  if (dmq.empty())
    fail(ErrorCode::kRuntime, "No dmq_balancer layer in quant config file, please check whether the quant config "
                              "file matches or whether a layer in graph that supports dmq_balancer. (config_file '" +
                                  config_file + "')");
  if (config.do_fusion) fuse_conv_batchnorm(graph, prepared.info, config.skip_fusion_layers, notes);

  std::vector<BalanceLayer> layers;
  for (const LayerQuantConfig* c : dmq) {
    const onnx::NodeProto* node = find_node(graph, c->name);
    if (!node) fail(ErrorCode::kRuntime, "internal error: layer '" + c->name + "' is not a node of the graph");
    const InputChannelMap map = layer_input_channel_map(graph, *node);
    const onnx::TensorProto& weight = *layer_weight(graph, *node);
    BalanceLayer layer;
    layer.name = c->name;
    layer.module_type = prepared.info.find_layer(c->name)->module_type;
    layer.migration_strength = static_cast<float>(*c->dmq_balancer_param);
    layer.weight_rank = static_cast<int64_t>(weight.dims_size());
    const WeightLayout layout = node_kind(*node)->layout;
    layer.channels_last = layout == WeightLayout::kGemm || layout == WeightLayout::kInOut;
    layer.weight_max = weight_channel_abs_max(tensor_to_floats(weight), map);
    layers.push_back(std::move(layer));
  }
  auto recorder = std::make_unique<BalanceRecorder>(record_file, std::move(layers));
  // AMCT starts from an empty record; ours is only replaced once every check
  // above has passed, so a refused call leaves the previous file.
  write_file_atomic(record_file, "", "record file");
  return recorder;
}

}  // namespace amct
