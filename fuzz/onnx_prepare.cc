// libFuzzer target: preparing an exported model (prepare_model: module
// names, weight transposes, constant folding, support verdicts) with the
// modules of fixed_model, then the opset converter down to 11 and up to 21.
#include "amct/model_prep.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  amct::fuzz::expect_clear_error([&] {
    const amct::PreparedModel prepared =
        amct::prepare_model(amct::parse_onnx_model(amct::fuzz::as_string(data, size), "fuzz.onnx"),
                            amct::fuzz::fixed_modules());
    for (const int64_t target : {11, 21}) {
      amct::fuzz::expect_clear_error([&] {
        onnx::ModelProto converted = prepared.model;
        amct::convert_opset(converted, target);
        converted.SerializeAsString();
      });
    }
  });
  return 0;
}
