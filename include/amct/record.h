// The record file (docs/amct-reference.md#record-file): AMCT's ScaleOffsetRecord text-proto.
#pragma once

#include <string>

#include "scale_offset_record_pytorch.pb.h"

namespace amct {

using ScaleOffsetRecord = AMCTPytorchProto::ScaleOffsetRecord;
using SingleLayerRecord = AMCTPytorchProto::SingleLayerRecord;

// Parses a record file; a syntax error names the file, line and column.
ScaleOffsetRecord read_record_file(const std::string& path);
ScaleOffsetRecord parse_record_text(const std::string& text, const std::string& origin);

// Text exactly as AMCT writes it (protobuf text format, floats printed as the
// shortest float32 round-trip in Python's layout).
std::string record_to_text(const ScaleOffsetRecord& record);
void write_record_file(const std::string& path, const ScaleOffsetRecord& record);

// The entry for `layer`, or nullptr.
const SingleLayerRecord* find_record(const ScaleOffsetRecord& record, const std::string& layer);
SingleLayerRecord* find_record(ScaleOffsetRecord& record, const std::string& layer);

}  // namespace amct
