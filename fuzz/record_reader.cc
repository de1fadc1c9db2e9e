// libFuzzer target: the record file reader (parse_record_text), the printer,
// and the record checked against fixed_model and carried through the save
// passes, which turn its factors into integers.
#include "amct/record.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const onnx::ModelProto model = amct::fuzz::fixed_model(false);
  amct::fuzz::expect_clear_error([&] {
    const amct::ScaleOffsetRecord record = amct::parse_record_text(amct::fuzz::as_string(data, size), "fuzz.txt");
    amct::record_to_text(record);
    const amct::QuantPlan plan = amct::check_record(record, model.graph(), "fuzz.txt", "fixed.onnx");
    amct::fuzz::run_save_pipeline(model, plan);
  });
  return 0;
}
