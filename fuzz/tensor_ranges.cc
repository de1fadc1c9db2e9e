// libFuzzer target: the tensor-ranges sidecar reader (parse_tensor_ranges).
#include "amct/tensor_ranges.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  amct::fuzz::expect_clear_error(
      [&] { amct::parse_tensor_ranges(amct::fuzz::as_string(data, size), "fuzz.ranges.json"); });
  return 0;
}
