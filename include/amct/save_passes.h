// The graph passes of save_model (docs/amct-reference.md#save_model-passes to #fake-quant-model) and the one ordered list that
// runs them. Each pass matches the layers of the QuantPlan (or the nodes an
// earlier pass inserted) and rewrites the graph in place.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "amct/channel_map.h"
#include "amct/layer_graph.h"
#include "amct/onnx_graph.h"
#include "amct/record_check.h"
#include "onnx/onnx.pb.h"

namespace amct {

// kCommon passes run once; the deploy and fake-quant passes then run on two
// copies of the result. kQdq passes run on their own copy of the modified
// model, taken before the common passes (they need the float weights).
enum class SaveStage { kCommon, kDeploy, kFakeQuant, kQdq };

using SavePassFn = void (*)(onnx::GraphProto& graph, const QuantPlan& plan);

struct SavePass {
  std::string_view name;
  SaveStage stage;
  SavePassFn run;
};

// All passes, in the order they run within each stage.
std::span<const SavePass> save_passes();
void run_save_passes(onnx::GraphProto& graph, const QuantPlan& plan, SaveStage stage);

// Common passes (docs/amct-reference.md#save_model-passes).
void gemm_trans_b_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// Also the first QDQ pass: the QDQ model's weights carry the factors too.
void apply_dmq_balancer_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void insert_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void insert_weight_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void insert_dequant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void insert_bias_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void quant_fusion_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// Deploy passes (docs/amct-reference.md#deploy-model).
void pack_int4_weight_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void replace_rnn_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// Fake-quant passes (docs/amct-reference.md#fake-quant-model).
void insert_rnn_fake_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void replace_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void weight_fakequant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void replace_dequant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void replace_anti_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void replace_bias_quant_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// QDQ model (QuantizeLinear/DequantizeLinear, see save_model.h). They run in
// this order; each later pass reads the op types the earlier ones left.
void qdq_deconv_to_conv_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void qdq_output_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void qdq_input_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void qdq_weight_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// Full-INT8 QDQ model only (plan.tensor_ranges not empty): after QdqInput.
void qdq_global_pool_pass(onnx::GraphProto& graph, const QuantPlan& plan);
void qdq_tensor_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// Last: zero Pads on the integers before a Conv become the Conv's pads.
void qdq_fold_pad_pass(onnx::GraphProto& graph, const QuantPlan& plan);
// All outputs (docs/amct-reference.md#output-files).
void remove_op_data_type_pass(onnx::GraphProto& graph, const QuantPlan& plan);

// ---- helpers shared by the passes ----

// The node of a planned layer; its absence is a bug (the record was checked).
onnx::NodeProto& layer_node(onnx::GraphProto& graph, const QuantLayer& layer);

// The layer an inserted node belongs to: node "<L><suffix>" -> layer L.
const QuantLayer* layer_of_node(const QuantPlan& plan, const std::string& node_name, std::string_view suffix);

// The bias input of a layer node whose kind takes its bias as an input
// (Conv, ConvTranspose, Gemm), or -1. A MatMul's bias is a following Add
// that stays float, as in AMCT (docs/amct-reference.md#bias-quantization).
int layer_bias_input(const onnx::NodeProto& node);

// An initializer that only `node` uses, for input `index`: the existing one
// when nothing else reads it, else a private copy named after `copy_name` (of
// an initializer or a Constant/Identity-wrapped value) wired into `node`.
// `what` names the input in the error raised when it is not constant.
onnx::TensorProto& exclusive_initializer(onnx::GraphProto& graph, onnx::NodeProto& node, int index,
                                         const std::string& copy_name, const std::string& what);

// Per output channel dequant scales float32(scale_w[c] * scale_d).
std::vector<float> dequant_scales(const QuantLayer& layer);
// LSTM/GRU: per gate row float32(scale_r[c] * scale_h), the scale of the
// recurrence's integer accumulator.
std::vector<float> recurrent_dequant_scales(const QuantLayer& layer);
// Whether `layer` is an LSTM/GRU (AMCT's RNN passes handle it, not the
// AscendQuant/AscendDequant ones).
bool is_recurrent_layer(const QuantLayer& layer);
// The dequant scale of each value of a layer's bias of `bias_size` values:
// dequant_scales(layer), or for LSTM/GRU one per value of B = [Wb, Rb].
std::vector<float> bias_dequant_scales(const QuantLayer& layer, int64_t bias_size);
// The output-channel map of a planned layer's weight as it is in `graph` now.
ChannelMap layer_channel_map(const onnx::GraphProto& graph, const onnx::NodeProto& node);
// Dequant parameter word of docs/amct-reference.md#dequant-parameter-packing: offset_w in bits 32-39, float32 bits below.
uint64_t pack_dequant_param(float scale, int32_t weight_offset);
float unpack_dequant_scale(uint64_t param);

// Replaces `from` by `to` in the inputs of every node except `skip`.
void rename_input_uses(onnx::GraphProto& graph, const std::string& from, const std::string& to,
                       const onnx::NodeProto* skip = nullptr);
onnx::NodeProto& add_node(onnx::GraphProto& graph, const std::string& op_type, const std::string& name,
                          const std::vector<std::string>& inputs, const std::vector<std::string>& outputs);
onnx::NodeProto& add_scalar_constant(onnx::GraphProto& graph, const std::string& name, float value);
void remove_value_info(onnx::GraphProto& graph, const std::string& tensor);
// The same for many tensors, in one pass over value_info.
void remove_value_infos(onnx::GraphProto& graph, const std::unordered_set<std::string>& tensors);

// ---- helpers shared by the QDQ passes ----

// Whether the QDQ model quantizes `layer`: 8-bit activations on a float32
// layer. Other layers stay float there (ONNX Runtime has no integer kernel
// for INT16/INT4 activations or LSTM/GRU; float16 layers would need float16
// scales).
bool qdq_quantizes(const QuantLayer& layer);

// Names of the scale (FLOAT scalar scale_d) and zero point (UINT8 scalar
// offset_d + 128) initializers of a layer's input, created on first use.
// UINT8 with the shifted zero point computes the same integers as AMCT's
// INT8 ones, and lets ONNX Runtime on x86 fuse Add and shared inputs.
struct QdqParams {
  std::string scale;
  std::string zero_point;
};
QdqParams qdq_input_params(onnx::GraphProto& graph, const QuantLayer& layer);

// Per output channel values of a per-tensor or per-channel factor list,
// repeated to `channels` entries (a regrouped ConvTranspose has several Conv
// channels per deconvolution channel).
std::vector<float> qdq_channel_values(const std::vector<float>& values, int64_t channels);

// The node whose output 0 is the float result of layer L in the QDQ graph
// before its output is requantized: the bias Add of a MatMul, else the layer
// node (a regrouped ConvTranspose is requantized before its DepthToSpace, so
// that ONNX Runtime sees Conv -> QuantizeLinear).
onnx::NodeProto& qdq_result_node(onnx::GraphProto& graph, onnx::NodeProto& layer);

// Ops y = f(x) with quantize(f(x)) == f(quantize(x)) for the same factors
// (qdq_output_pass.cc says why each one is).
bool qdq_commutes_with_quantization(const GraphIndex& index, const onnx::NodeProto& node);
// `tensor`, or the end of the chain of Relu / Clip it feeds as their only
// input and use: ONNX Runtime drops such a chain before a QuantizeLinear
// that clamps the same way, so the full-INT8 model quantizes there.
std::string qdq_after_activations(const GraphIndex& index, std::string tensor);
// Removes the initializers and Constant nodes of `tensors` that nothing
// reads any more (operands a pass replaced), in one pass over the graph.
void qdq_drop_unread(onnx::GraphProto& graph, const std::vector<std::string>& tensors);
// `tensor` before Identity and CastLike(x, like), which torch.onnx puts on
// Clip's bounds, and the float Cast that CastLike becomes below opset 15.
std::string qdq_uncast(const GraphIndex& index, std::string tensor);
// The value of a constant floating-point scalar (through qdq_uncast), nullopt
// for anything else.
std::optional<float> qdq_constant_scalar(const GraphIndex& index, const std::string& tensor);
// A constant-mode float Pad fills with 0: its `value` attribute (opset < 11)
// is 0, or its fill input is absent or a constant zero (qdq_constant_scalar).
bool qdq_fills_with_zero(const GraphIndex& index, const onnx::NodeProto& pad);
// The values of a constant INT64 scalar or 1-D tensor (pads, axes); nullopt
// when it holds anything else.
std::optional<std::vector<int64_t>> qdq_int64_values(const onnx::TensorProto& tensor);
// The ranks the graph declares for its tensors (inputs, value_info, outputs).
using QdqDeclaredRanks = std::unordered_map<std::string, int>;
QdqDeclaredRanks qdq_declared_ranks(const onnx::GraphProto& graph);
// A ReduceMean over all spatial axes (2 .. rank-1, the input's declared
// rank) that keeps them: GlobalAveragePool's result (qdq_global_pool_pass.cc).
bool qdq_is_global_mean(const GraphIndex& index, const QdqDeclaredRanks& ranks, const onnx::NodeProto& node);

// Renames the output `index` of `producer` to `renamed` and returns the old
// name, so a chain of new nodes can end in it: consumers, graph outputs and
// value_info of the old name stay valid.
std::string take_output(onnx::GraphProto& graph, onnx::NodeProto& producer, int index, const std::string& renamed);

// Adds an initializer and returns its name.
const std::string& add_initializer(onnx::GraphProto& graph, onnx::TensorProto tensor);

}  // namespace amct
