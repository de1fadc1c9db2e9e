// libFuzzer target: the ONNX reader (parse_onnx_model), the record check of
// fixed_record against the fuzzed model, and the save passes on it.
#include "amct/onnx_validate.h"
#include "amct/record.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const amct::ScaleOffsetRecord record = amct::parse_record_text(amct::fuzz::fixed_record(), "fixed.txt");
  amct::fuzz::expect_clear_error([&] {
    const onnx::ModelProto model = amct::parse_onnx_model(amct::fuzz::as_string(data, size), "fuzz.onnx");
    amct::validate_onnx_model(model, "fuzz.onnx");  // as save_model does first
    const amct::QuantPlan plan = amct::check_record(record, model.graph(), "fixed.txt", "fuzz.onnx");
    amct::fuzz::run_save_pipeline(model, plan);
  });
  return 0;
}
