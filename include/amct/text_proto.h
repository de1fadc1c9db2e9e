// Reading AMCT's text-format protobuf files (record, simple config).
#pragma once

#include <string>

#include <google/protobuf/message.h>

namespace amct {

// Merges `text` into `message` like Python's text_format.Merge, which AMCT
// uses: a singular field given twice keeps its last value. On a syntax error
// throws kInvalidArgument: "<what>: line L, column C: <reason>".
void merge_text_proto(const std::string& text, google::protobuf::Message& message, const std::string& what);

}  // namespace amct
