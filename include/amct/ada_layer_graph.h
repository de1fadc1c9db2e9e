// What ada_quantize reads from a layer's node (docs/amct-reference.md#ada_quantize):
// the op's geometry in torch's weight layout, the bias, and the activation
// whose output the rounding optimisation reconstructs.
#pragma once

#include <string>
#include <vector>

#include "amct/calib/adaround.h"
#include "onnx/onnx.pb.h"

namespace amct {

struct AdaLayerGraph {
  AdaLayerShape shape;
  bool transposed = false;  // the graph holds the weight as [Cin, Cout] (MatMul, Gemm with transB=0)
  std::vector<float> bias;  // empty when the layer has none
  FollowingActivation activation;
};

// Throws kRuntime naming `layer` when the node is not a Conv2d,
// ConvTranspose2d or Linear that AdaRound can model (auto_pad, output_shape).
AdaLayerGraph ada_layer_graph(onnx::GraphProto& graph, const onnx::NodeProto& node, const std::vector<int64_t>& dims,
                              const std::string& layer);

}  // namespace amct
