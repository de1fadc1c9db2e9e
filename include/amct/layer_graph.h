// Facts about a quantizable layer's node, read through the layer-kind table:
// its kind, weight, bias and output-channel map. The graph passes, the
// record check and quantize_model ask here instead of comparing op names.
#pragma once

#include <string>
#include <vector>

#include "amct/channel_map.h"
#include "amct/layer_kind.h"
#include "onnx/onnx.pb.h"

namespace amct {

// The row of `node`'s op, or nullptr when the op is not a layer kind.
const OpKind* node_kind(const onnx::NodeProto& node);

// The constant weight of a layer node (input `kind.weight_input`), or
// nullptr when the kind has no weight or the input is not constant.
const onnx::TensorProto* layer_weight(const onnx::GraphProto& graph, const onnx::NodeProto& node);

// The output-channel map of `node`'s weight with `dims` (group and transB
// read from the node). Throws kInvalidArgument naming the layer when the
// dims do not fit.
ChannelMap node_channel_map(const onnx::NodeProto& node, const std::vector<int64_t>& dims);

// The bias Add of a MatMul layer: the single consumer of its output, an Add
// whose other input is a constant 1-D tensor of length N. nullptr if none.
onnx::NodeProto* matmul_bias_add(onnx::GraphProto& graph, const onnx::NodeProto& matmul);
// The input of a bias Add that holds the bias: the one that is not `product`.
int bias_add_input_index(const onnx::NodeProto& add, const std::string& product);

// Why `node` cannot be quantized by save_model (the node-based limits of
// docs/amct-reference.md#supported-layers), or "" when it can.
std::string unquantizable_reason(const onnx::GraphProto& graph, const onnx::NodeProto& node);

// Why an LSTM/GRU node is outside the ONNX-level limits AMCT quantizes
// (docs/amct-reference.md#lstm-and-gru), or "" when it is within them.
std::string rnn_limit_problem(const onnx::GraphProto& graph, const onnx::NodeProto& node);

}  // namespace amct
