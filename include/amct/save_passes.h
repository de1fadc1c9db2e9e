// The graph passes of save_model (spec 7.2-7.4) and the one ordered list that
// runs them. Each pass matches the layers of the QuantPlan (or the nodes an
// earlier pass inserted) and rewrites the graph in place.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "amct/record_check.h"
#include "onnx/onnx.pb.h"

namespace amct {

// kCommon passes run once; the deploy and fake-quant passes then run on two
// copies of the result.
enum class SaveStage { kCommon, kDeploy, kFakeQuant };

using SavePassFn = void (*)(onnx::GraphProto& graph, const QuantPlan& plan);

struct SavePass {
  std::string_view name;
  SaveStage stage;
  SavePassFn run;
};

// All passes, in the order they run within each stage.
std::span<const SavePass> save_passes();
void run_save_passes(onnx::GraphProto& graph, const QuantPlan& plan, SaveStage stage);

// Common passes (spec 7.2).
void gemm_trans_b_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void insert_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void insert_weight_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void insert_dequant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void insert_bias_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void quant_fusion_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// Fake-quant passes (spec 7.4).
void replace_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void weight_fakequant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void replace_dequant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void replace_bias_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// Both outputs (spec 7.5).
void remove_op_data_type_pass(onnx::GraphProto& graph, const QuantPlan& plan);

// ---- helpers shared by the passes ----

// The node of a planned layer; its absence is a bug (the record was checked).
onnx::NodeProto& layer_node(onnx::GraphProto& graph, const QuantLayer& layer);

// The layer an inserted node belongs to: node "<L><suffix>" -> layer L.
const QuantLayer* layer_of_node(const QuantPlan& plan, const std::string& node_name, std::string_view suffix);

// The bias Add of a MatMul layer: the single consumer of its output, an Add
// whose other input is a constant 1-D tensor of length N. nullptr if none.
onnx::NodeProto* matmul_bias_add(onnx::GraphProto& graph, const onnx::NodeProto& matmul);
// The input of a bias Add that holds the bias: the one that is not `product`.
int bias_add_input_index(const onnx::NodeProto& add, const std::string& product);

// The bias tensor name of a layer ("" if it has none): input 2 of
// Conv/ConvTranspose/Gemm, the constant input of a MatMul's bias Add.
std::string layer_bias_name(onnx::GraphProto& graph, const onnx::NodeProto& node);

// An initializer that only `node` uses, for input `index`: the existing one
// when nothing else reads it, else a private copy named after `copy_name` (of
// an initializer or a Constant/Identity-wrapped value) wired into `node`.
// `what` names the input in the error raised when it is not constant.
onnx::TensorProto& exclusive_initializer(onnx::GraphProto& graph, onnx::NodeProto& node, int index,
                                         const std::string& copy_name, const std::string& what);

// Per output channel dequant scales float32(scale_w[c] * scale_d) (spec 6.8).
std::vector<float> dequant_scales(const QuantLayer& layer);
// Dequant parameter word of spec 6.9: offset_w in bits 32-39, float32 bits below.
uint64_t pack_dequant_param(float scale, int32_t weight_offset);
float unpack_dequant_scale(uint64_t param);

// Replaces `from` by `to` in the inputs of every node except `skip`.
void rename_input_uses(onnx::GraphProto& graph, const std::string& from, const std::string& to,
                       const onnx::NodeProto* skip = nullptr);
onnx::NodeProto& add_node(onnx::GraphProto& graph, const std::string& op_type, const std::string& name,
                          const std::vector<std::string>& inputs, const std::vector<std::string>& outputs);
onnx::NodeProto& add_scalar_constant(onnx::GraphProto& graph, const std::string& name, float value);
void remove_value_info(onnx::GraphProto& graph, const std::string& tensor);

}  // namespace amct
