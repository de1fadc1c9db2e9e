// DMQ balance factors in the record file (docs/amct-reference.md#dmq-balancing,
// #record-validation): the field tensor_balance_factor that quantize_preprocess
// writes, read back by quantize_model and save_model.
#pragma once

#include <string>
#include <vector>

#include "amct/calib/dmq_balance.h"
#include "amct/record.h"
#include "onnx/onnx.pb.h"

namespace amct {

// The input-channel map of a layer node's constant weight in `graph`; throws
// kInvalidArgument naming the layer when it has none or it does not fit.
InputChannelMap layer_input_channel_map(const onnx::GraphProto& graph, const onnx::NodeProto& node);

// An entry's tensor_balance_factor checked against its node: not on a
// weightless layer (AveragePool), one value per input channel, each in
// [FLT_EPSILON, 1/FLT_EPSILON]. Messages start with `where`. Returns the factors.
std::vector<float> checked_balance_factors(const SingleLayerRecord& value, const onnx::GraphProto& graph,
                                           const onnx::NodeProto& node, const std::string& where);

// quantize_model with DMQ: the record quantize_preprocess wrote, reduced to the
// tensor_balance_factor of each layer in `dmq_layers`, in the file's order (so
// AMCT's order of DMQ entries first is kept). A missing or empty record file
// is a kRuntime error, a DMQ layer without factors a kInvalidArgument one.
// Entries of other layers are dropped, each with a note.
ScaleOffsetRecord read_balance_record(const std::string& record_file, const std::string& config_file,
                                      const std::vector<std::string>& dmq_layers, const onnx::GraphProto& graph,
                                      std::vector<std::string>& notes);

}  // namespace amct
