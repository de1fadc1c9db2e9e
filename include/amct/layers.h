// What the core knows about the user's torch modules and which of them can be
// quantized. The Python side describes every module of named_modules(); the
// graph analysis (graph/layer_analysis) decides support from that and the ONNX.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace amct {

// One entry of named_modules(), as described by the Python front end.
struct ModuleInfo {
  std::string name;
  std::string type;           // torch class name, e.g. "Conv2d"
  std::string padding_mode;   // Conv*: "zeros", "reflect", ...
  std::vector<int64_t> dilation;
  int64_t weight_id = 0;      // identity of the weight Parameter (shared weights)
  bool has_weight = false;
  bool has_bias = false;
  bool training = false;      // BatchNorm: module.training
  bool affine = true;         // BatchNorm
  bool track_running_stats = true;
  std::string dtype = "float";  // "float" or "float16": parameter dtype
  std::vector<std::string> torch_bases;  // torch.nn base classes of its class, nearest first
  // The quantizable class the module counts as: its own class, or for a
  // subclass (when subclasses are quantized) its nearest quantizable base
  // in torch_bases; "" for any other module. Set by prepare_model.
  std::string layer_type;
  // RNN attributes (LSTM/GRU are recognised but not quantized yet).
  int64_t num_layers = 1;
  bool bidirectional = false;
  double dropout = 0.0;      // LSTM/GRU
  int64_t proj_size = 0;     // LSTM
};

// How forward() runs a layer, which decides where calibration reads its input.
enum class LayerUse {
  kCall,          // forward() calls the module of a quantizable class: its call's input is the op's input
  kSubclassCall,  // forward() calls a subclass, whose forward may change the input (pad it, say) before the op
  kWeightRead,    // forward() does not call the module; one op reads its weight (F.linear(x, m.weight),
                  // nn.MultiheadAttention's out_proj)
};

// A module of a quantizable class (or subclass) and the verdict on it.
struct LayerInfo {
  std::string name;
  std::string module_type;      // the quantizable torch class it counts as (ModuleInfo::layer_type)
  LayerUse use = LayerUse::kCall;
  std::string op_type;          // ONNX op of its node ("" if not in the graph)
  bool supported = false;
  std::string unsupported_reason;  // why it is not supported, for messages
  bool has_bias = false;
  int64_t groups = 1;
  int64_t cin = 0;
  int64_t cout = 0;
};

struct ModelInfo {
  std::vector<ModuleInfo> modules;  // named_modules() order
  std::vector<LayerInfo> layers;    // modules of quantizable classes, same order

  const ModuleInfo* find_module(const std::string& name) const;
  const LayerInfo* find_layer(const std::string& name) const;
};

// Class names AMCT can quantize (docs/amct-reference.md#supported-layers), in the capacity file's order.
const std::vector<std::string>& quantizable_types();
bool is_quantizable_type(const std::string& type);
// Types whose weights default to per-channel scales.
bool is_channel_wise_type(const std::string& type);
// Types that take 16-bit activations (Linear only with a bias).
bool supports_int16(const LayerInfo& layer);

}  // namespace amct
