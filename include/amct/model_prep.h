// Preparing an exported model for quantization: node names become torch
// module names, weight transposes are folded, and every module of a
// quantizable class gets a verdict (docs/amct-reference.md#name-mapping, #supported-layers, #layers-left-in-float).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "amct/layers.h"
#include "onnx/onnx.pb.h"

namespace amct {

struct PreparedModel {
  onnx::ModelProto model;
  ModelInfo info;
  // Modules the user should hear about that are not layers of ModelInfo
  // (e.g. subclasses of quantizable classes, which AMCT does not quantize).
  std::vector<std::string> notes;
};

// The module list the Python front end sends: a JSON array of objects with the
// fields of ModuleInfo.
std::vector<ModuleInfo> parse_module_list(const std::string& json);

// Refuses a model that already holds AMCT's (or our) quantization modules.
void check_no_quantization_modules(const std::vector<ModuleInfo>& modules);

// Choices beyond AMCT's behaviour.
struct PrepareOptions {
  // AMCT quantizes only the exact classes (Conv2d, Linear, ...). true also
  // quantizes their subclasses whose forward runs the class's own op on the
  // module's weight (EfficientNet's Conv2dStaticSamePadding, torchvision's
  // Conv3DSimple); false is AMCT's behaviour, and they stay float with a note.
  bool quantize_subclasses = true;
};

// Validates the exported ONNX and runs the preparation passes.
PreparedModel prepare_model(onnx::ModelProto exported, std::vector<ModuleInfo> modules,
                            const PrepareOptions& options = {});

// prepare_model for the layers of a config JSON, whose quantize_subclasses
// decides whether subclasses are layers; `config_text` receives the file.
PreparedModel prepare_model_for_config(onnx::ModelProto exported, std::vector<ModuleInfo> modules,
                                       const std::string& config_file, std::string& config_text);

// --- the passes, one per file under src/graph/passes/ ---

// Renames the node that implements each module (its Conv, Gemm, MatMul,
// AveragePool, BatchNormalization ...) to the module name, using the
// exporter's per-node module scopes. Returns the modules whose op appears
// more than once (a module called twice), which cannot be quantized.
std::set<std::string> name_nodes_by_module(onnx::GraphProto& graph, const std::vector<ModuleInfo>& modules);

// Modules of a layer class that forward() does not call but whose weight an
// op reads (F.linear(x, self.qkv.weight), nn.MultiheadAttention's out_proj).
struct WeightReaders {
  std::set<std::string> named;                  // modules whose reading op now carries their name
  std::map<std::string, std::string> problems;  // module -> why its weight's readers cannot be its layer
};

// For every module with a layer_type, a weight, and no node of its own: when
// exactly one node reads the module's weight initializer, as the weight input
// of an op of the module's kind exported from the class's own aten op
// (standard_op_problem), that node is renamed to the module. Runs after
// fold_weight_transposes, so a MatMul reads the weight itself, not a
// Transpose of it, and before fold_constant_inputs, so that a computation on
// the weight (a slice, say) is still there to be named.
WeightReaders name_weight_readers(onnx::GraphProto& graph, const std::vector<ModuleInfo>& modules);

// Why `node` is not the op a module of class `module.layer_type` runs on its
// own weight ("" when it is): the exporter's "pkg.torch.onnx.fx_node"
// metadata must name one of the class's aten ops (F.linear -> aten.linear,
// not aten.matmul), and the node's weight input must be the module's weight
// parameter itself (not a slice, transpose or computation of it).
std::string standard_op_problem(const onnx::NodeProto& node, const ModuleInfo& module);

// MatMul weights that reach the node through a Transpose of an initializer
// become a pre-transposed initializer, so every MatMul layer has a constant
// [K, N] weight as its second input.
void fold_weight_transposes(onnx::GraphProto& graph);

// The weight and bias of Conv, ConvTranspose and Gemm, the weight of MatMul
// and the parameters of BatchNormalization, where the exporter computes them
// from constants (the zero bias of a bias-less conv, the scale and shift of a
// BatchNorm without affine parameters), are evaluated and become initializers
// named "<node>.weight", "<node>.bias", "<node>.running_mean" ...; an
// all-zero computed bias is removed. Inputs that are not provably constant,
// malformed or too large are left as they are.
void fold_constant_inputs(onnx::GraphProto& graph);

}  // namespace amct
