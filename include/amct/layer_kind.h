// The layer-kind table: everything the core knows about a quantizable layer
// kind lives in one row, and the passes, checks and config schema read it
// instead of comparing op names. Two views of the same kinds:
//   - OpKind, one row per ONNX op a quantized layer can be (graph facts:
//     which inputs hold the weight, recurrent weight and bias, and how the
//     weight's axes map to output channels);
//   - ModuleKind, one row per torch class (AMCT matches class names exactly)
//     with the ONNX ops its node may be and its capabilities.
// docs/design-notes.md explains how to add a row.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace amct {

// How a weight tensor's axes relate to the layer's output channels.
enum class WeightLayout {
  kNone,          // no weight (AveragePool)
  kOutFirst,      // [Cout, Cin/group, k...]: Conv
  kDeconv,        // [Cin, Cout/group, k...]: ConvTranspose (regrouped to Cout-first for scales)
  kGemm,          // [Cout, Cin] when transB=1, [Cin, Cout] when transB=0
  kInOut,         // [Cin, Cout]: MatMul
  kGates,         // [directions, gates * hidden, in]: LSTM/GRU W and R, per gate-row channel
};

struct OpKind {
  std::string_view op_type;
  int weight_input;      // -1 when the layer has no weight
  int recurrent_input;   // LSTM/GRU R; -1 otherwise
  int bias_input;        // -1 when the bias is not an input of the node (MatMul: a following Add)
  WeightLayout layout;
  int min_weight_rank;   // accepted weight ranks (0 when there is no weight)
  int max_weight_rank;
  bool per_channel;      // scale_w may hold one value per output channel
  bool fusable_with_bn;  // a following BatchNormalization folds into it
};

struct ModuleKind {
  std::string_view torch_type;
  std::span<const std::string_view> op_types;  // the ONNX ops its node may be
  // The aten ops (any overload) its forward runs, as the exporter names them
  // in a node's "pkg.torch.onnx.fx_node" metadata: a subclass or a weight
  // used through a functional call is a layer only when it runs one of these.
  std::span<const std::string_view> aten_ops;
  bool channel_wise_default;  // ARQ per output channel unless the config says otherwise
  bool int16_activations;     // 16-bit activations allowed
  bool int16_needs_bias;      // ... only when the layer has a bias (Linear)
  bool int6_int7_weights;
  bool ada;                   // wts_algo ada_quantize
  bool dmq;                   // dmq_balancer_param
  bool symmetric_only;        // activations always symmetric (Conv3d)
  bool fusable_with_bn;       // Conv+BN fusion (skip_fusion_layers may name it)
  bool has_padding_mode;      // a torch padding_mode other than 'zeros' is not quantizable
};

// Every row, in AMCT's capacity-file order (the order create_quant_config
// and the simple config list types in messages).
std::span<const ModuleKind> module_kinds();
std::span<const OpKind> op_kinds();

// nullptr when the torch class / ONNX op is not a quantizable kind.
const ModuleKind* find_module_kind(std::string_view torch_type);
const OpKind* find_op_kind(std::string_view op_type);

// Whether `op_type` is one of the ops a module of `kind` exports to.
bool exports_to(const ModuleKind& kind, std::string_view op_type);
// Whether `aten_op` ("aten.conv2d", no overload) is one a module of `kind` runs.
bool runs_aten_op(const ModuleKind& kind, std::string_view aten_op);
// Whether a module of `kind` has a weight (its ops take one).
bool has_weight(const ModuleKind& kind);
// Whether a module of `kind` is recurrent (LSTM, GRU).
bool is_recurrent(const ModuleKind& kind);

}  // namespace amct
