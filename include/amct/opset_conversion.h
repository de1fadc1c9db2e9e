// Converts an ONNX model between default-domain opsets 11..21. The dynamo
// exporter of torch writes opset 18 and above, while Huawei's ATC reads
// opset 11..15 and AMCT itself writes opset 11; this closes the gap in both
// directions.
#pragma once

#include <cstdint>

#include "onnx/onnx.pb.h"

namespace amct {

// The version of the default ("" or "ai.onnx") domain, 0 if the model imports none.
int64_t default_opset(const onnx::ModelProto& model);

// Rewrites `model` in place so that it is valid at default-domain opset
// `target` and declares exactly that: the opset import is updated and
// ir_version set to the IR version of the target opset (11->6, 12..14->7,
// 15..18->8, 19..20->9, 21->10). Converts down (from up to 21 to as low as
// 11) and up (from 11 to 12..21).
//
// Node names are kept; nodes added by a decomposition are named
// "<original node name>.<suffix>", and the node that produces the original
// output keeps the original name. Nodes of other domains are left alone.
// Subgraphs (If/Loop/Scan bodies) are converted too.
//
// An op with no form at the target throws amct::Error (kInvalidArgument)
// naming the op type, the node, the torch module it came from (when the
// exporter recorded one) and the lowest opset that works.
void convert_opset(onnx::ModelProto& model, int64_t target);

}  // namespace amct
