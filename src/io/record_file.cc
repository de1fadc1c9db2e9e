#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/number_format.h"
#include "amct/record.h"

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

class CollectFirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (!message_.empty()) return;
    message_ = "line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1) + ": " + message;
  }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

}  // namespace

ScaleOffsetRecord parse_record_text(const std::string& text, const std::string& origin) {
  ScaleOffsetRecord record;
  google::protobuf::TextFormat::Parser parser;
  CollectFirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &record))
    invalid("record file '" + origin + "' does not match AMCT's ScaleOffsetRecord format: " + errors.message());
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
