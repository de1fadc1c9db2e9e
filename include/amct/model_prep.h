// Preparing an exported model for quantization: node names become torch
// module names, weight transposes are folded, and every module of a
// quantizable class gets a verdict (docs/amct-reference.md#name-mapping, #supported-layers, #layers-left-in-float).
#pragma once

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

// Validates the exported ONNX and runs the preparation passes.
PreparedModel prepare_model(onnx::ModelProto exported, std::vector<ModuleInfo> modules);

// --- the passes, one per file under src/graph/passes/ ---

// Renames the node that implements each module (its Conv, Gemm, MatMul,
// AveragePool, BatchNormalization ...) to the module name, using the
// exporter's per-node module scopes. Returns the modules whose op appears
// more than once (a module called twice), which cannot be quantized.
std::set<std::string> name_nodes_by_module(onnx::GraphProto& graph, const std::vector<ModuleInfo>& modules);

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
