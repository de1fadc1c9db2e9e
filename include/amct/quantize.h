// quantize_model's engine (docs/amct-reference.md#quantize_model): Conv+BN fusion, ARQ weight
// quantization, the modified ONNX and the weight part of the record file.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "amct/calib/adaround.h"
#include "amct/config.h"
#include "amct/layers.h"
#include "amct/record.h"
#include "onnx/onnx.pb.h"

namespace amct {

struct FusedBatchNorm {
  std::string conv;
  std::string batchnorm;
};

// Folds eval-mode BatchNormalization nodes into the Conv that feeds them
// (docs/amct-reference.md#convbn-fusion). BN constants are resolved through Identity nodes, so freshly
// initialised BNs whose constants the exporter de-duplicated fuse too.
// Returns the pairs fused; `notes` receives why a candidate pair was not.
std::vector<FusedBatchNorm> fuse_conv_batchnorm(onnx::GraphProto& graph, const ModelInfo& info,
                                                const std::vector<std::string>& skip_fusion_layers,
                                                std::vector<std::string>& notes);

// A quantized layer's new parameters, in the torch module's own layout, for
// the calibration model.
struct QuantizedLayer {
  std::string name;
  std::string module_type;
  LayerUse use = LayerUse::kCall;     // where calibration reads its input
  std::vector<int64_t> weight_shape;  // empty for AvgPool2d
  // Fake-quantized (and BN-fused) float32 values in torch's layout, as raw
  // bytes: the modified ONNX's raw_data, handed on without a copy.
  std::string weight;
  // Where `weight` stays float (ConvTranspose in AMCT's calibration), the
  // fake-quantized weight for a fake-quant torch model; empty otherwise.
  std::vector<float> fake_quant_weight;
  std::vector<float> bias;            // BN-fused bias; empty when the layer has none
  // LSTM/GRU: `weight` is weight_ih_l0 and this weight_hh_l0 (both
  // fake-quantized, torch's gate order); empty for other layers.
  std::vector<float> recurrent_weight;
  std::vector<int64_t> recurrent_weight_shape;
  std::vector<float> balance_factor;  // DMQ: the layer's input is divided by these; empty without DMQ
};

// A conv that stays float but had a BatchNorm folded into it: its fused
// parameters, torch's layout. The calibration model drops the BatchNorm of
// every fused pair (as AMCT fuses independently of quant_enable), so such a
// conv must compute with these instead of its own.
struct FusedFloatConv {
  std::string name;
  std::vector<float> weight;
  std::vector<float> bias;
};

struct QuantizeResult {
  QuantConfig config;
  std::vector<QuantizedLayer> layers;  // quant-enabled layers in named_modules() order
  std::vector<FusedBatchNorm> fused;
  std::vector<FusedFloatConv> fused_float_convs;  // the convs of `fused` that are not in `layers`
  std::vector<std::string> notes;      // things the user should know (skipped fusions, float layers)
  ScaleOffsetRecord record;            // weight factors, as written to the record file
  std::string weights_fingerprint;     // in the modified ONNX and the record's sidecar (weights_fingerprint.h)
  // With QuantizeOptions::full_qdq_tensors, the tensors of the modified ONNX
  // that the full-INT8 QDQ model quantizes beyond the layers' inputs
  // (qdq_tensors.h), which calibration measures.
  std::vector<std::string> qdq_tensors;
};

// Choices beyond AMCT's behaviour; the defaults are AMCT's.
struct QuantizeOptions {
  // AMCT leaves ConvTranspose weights in float during calibration and in the
  // modified ONNX (the writers quantize them later), so the activations it
  // calibrates on see float deconvolutions. true calibrates on the
  // fake-quantized weights instead, as every other layer does.
  bool fake_quantize_deconv_weights = false;
  // The default-domain opset of the modified ONNX, and so of the deploy and
  // fake-quant models: AMCT writes 11, and Ascend's ATC reads 11 to 15.
  int64_t opset_version = kDefaultOpset;
  static constexpr int64_t kDefaultOpset = 11;
  static constexpr int64_t kMinOpset = 11;
  static constexpr int64_t kMaxOpset = 21;
  // A modified ONNX whose serialized size would reach this many bytes has its
  // largest initializers moved to "<modfied_onnx_file>.data" until it fits
  // (onnx_external_data.h); smaller values are for tests and tools.
  size_t external_data_limit = 2'000'000'000;
  // Lists QuantizeResult::qdq_tensors (calibration of the full-INT8 QDQ
  // model's extra tensors is a choice of the caller: it costs a forward).
  bool full_qdq_tensors = false;
  // Runs the model on quantize_model's input_data and returns the inputs of
  // the named layers, which ada_quantize optimises its rounding on. Called
  // once, only when a layer uses ada_quantize.
  std::function<std::map<std::string, LayerInputs>(const std::vector<std::string>&)> collect_layer_inputs;
};

// `exported` is the torch exporter's model (parse_onnx_model of its bytes, or
// load_onnx_model of its file when its weights are in external data).
//
// Runs the whole weight side of quantize_model and writes modified_onnx_file,
// record_file and its sidecar "<record_file>.amct.json" (all together, after
// every check has passed).
QuantizeResult quantize_model(const std::string& config_file, const std::string& modified_onnx_file,
                              const std::string& record_file, onnx::ModelProto exported,
                              std::vector<ModuleInfo> modules, const QuantizeOptions& options = {});

// create_quant_config (docs/amct-reference.md#create_quant_config): the config JSON from parameters, or from a
// simple config file when `simple_config_file` is not empty. `quantize_subclasses`
// and `linear_channel_wise` (beyond AMCT, QuantConfig's fields) apply without a
// simple config; a simple config says them itself.
void create_quant_config(const std::string& config_file, onnx::ModelProto exported,
                         std::vector<ModuleInfo> modules, const std::vector<std::string>& skip_layers,
                         int64_t batch_num, bool activation_offset, const std::string& simple_config_file,
                         bool quantize_subclasses = true, bool linear_channel_wise = false);

}  // namespace amct
