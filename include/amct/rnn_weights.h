// The weights of an LSTM/GRU layer (docs/amct-reference.md#lstm-and-gru):
// W and R are quantized separately per gate row (or per tensor), in the
// ONNX gate order the record holds, and handed to the calibration model in
// torch's gate order.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "amct/config.h"
#include "amct/quantize.h"
#include "amct/record.h"
#include "amct/weights_fingerprint.h"
#include "onnx/onnx.pb.h"

namespace amct {

// Rows of an LSTM/GRU weight [gates * hidden, cols] reordered from ONNX's
// gate order (LSTM i,o,f,c; GRU z,r,h) to torch's (LSTM i,f,g,o; GRU r,z,n).
std::vector<float> onnx_gates_to_torch_order(std::span<const float> values, std::string_view op_type,
                                             int64_t cols);

// ARQ on the layer's W (record scale_w/offset_w) and R (scale_r/offset_r);
// the graph's W and R become their fake-quantized values. The returned
// layer carries both in torch's layout for the calibration model.
QuantizedLayer quantize_rnn_weights(onnx::GraphProto& graph, const onnx::NodeProto& node, const LayerInfo& layer,
                                    const LayerQuantConfig& config, SingleLayerRecord& record,
                                    WeightsFingerprint& fingerprint);

}  // namespace amct
