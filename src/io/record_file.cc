#include <google/protobuf/text_format.h>

#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/number_format.h"
#include "amct/record.h"
#include "amct/text_check.h"
#include "amct/text_proto.h"

namespace amct {
namespace {

// AMCT's records are written by Python protobuf, which prints float fields as
// the shortest float32 round trip in repr layout ("1.0", not "1").
class PythonFloatPrinter : public google::protobuf::TextFormat::FastFieldValuePrinter {
 public:
  void PrintFloat(float value, google::protobuf::TextFormat::BaseTextGenerator* out) const override {
    out->PrintString(format_python_float32(value));
  }
};

}  // namespace

ScaleOffsetRecord parse_record_text(const std::string& text, const std::string& origin) {
  check_utf8(text, "record file '" + origin + "'");
  ScaleOffsetRecord record;
  merge_text_proto(text, record, "record file '" + origin + "' does not match AMCT's ScaleOffsetRecord format");
  return record;
}

ScaleOffsetRecord read_record_file(const std::string& path) {
  return parse_record_text(read_file(path, "record file"), path);
}

std::string record_to_text(const ScaleOffsetRecord& record) {
  google::protobuf::TextFormat::Printer printer;
  printer.SetUseUtf8StringEscaping(true);
  printer.SetDefaultFieldValuePrinter(new PythonFloatPrinter());
  std::string text;
  printer.PrintToString(record, &text);
  return text;
}

void write_record_file(const std::string& path, const ScaleOffsetRecord& record) {
  write_file_atomic(path, record_to_text(record), "record file");
}

const SingleLayerRecord* find_record(const ScaleOffsetRecord& record, const std::string& layer) {
  for (const auto& entry : record.record())
    if (entry.key() == layer) return &entry.value();
  return nullptr;
}

SingleLayerRecord* find_record(ScaleOffsetRecord& record, const std::string& layer) {
  for (auto& entry : *record.mutable_record())
    if (entry.key() == layer) return entry.mutable_value();
  return nullptr;
}

}  // namespace amct
