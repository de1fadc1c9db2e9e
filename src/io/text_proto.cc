#include "amct/text_proto.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "amct/error.h"
#include "amct/text_check.h"

namespace amct {
namespace {

class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (!message_.empty()) return;
    // Errors found after parsing (missing required fields) have no position.
    message_ = line < 0 ? message
                        : "line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1) + ": " + message;
  }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

}  // namespace

void merge_text_proto(const std::string& text, google::protobuf::Message& message, const std::string& what) {
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.MergeFromString(text, &message)) invalid(what + ": " + shorten_for_message(errors.message(), 240));
}

}  // namespace amct
