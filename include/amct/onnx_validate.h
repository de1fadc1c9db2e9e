// Structural validation of an input ONNX model (the checker-level facts the
// graph passes rely on), run before anything reads the graph or writes a file.
#pragma once

#include <string>

#include "onnx/onnx.pb.h"

namespace amct {

// Throws kInvalidArgument naming `origin`, the node and the tensor at the
// first violation of:
//  - every tensor a node or the graph output reads is defined: a graph input,
//    an initializer, a node output (of this graph or, in a subgraph, of an
//    enclosing one), or the empty name of an omitted optional input;
//  - every tensor has one definition: no two initializers, no two node
//    outputs, no node output that is also a graph input or an initializer;
//  - every node has an output, and a node of a quantizable layer kind names
//    its result (output 0);
//  - two nodes share a name only when neither is a quantizable layer kind
//    (records and the save passes find layers by node name);
//  - no cycles;
//  - every initializer and tensor attribute has a data type, non-negative
//    dims whose product fits in int64, and exactly the data its dims and type
//    call for; data still in external files is refused (load_onnx_model
//    reads it into the model; parsed bytes cannot reach it).
void validate_onnx_model(const onnx::ModelProto& model, const std::string& origin);

}  // namespace amct
