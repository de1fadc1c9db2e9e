// libFuzzer target: the simple config reader (make_config_from_simple_text)
// against the example-config model. What create_quant_config would write
// from it must be a config JSON our reader accepts.
#include <cstdio>
#include <cstdlib>

#include "amct/config.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const amct::ModelInfo info = amct::fuzz::config_model_info();
  amct::fuzz::expect_clear_error([&] {
    const amct::QuantConfig config =
        amct::make_config_from_simple_text(amct::fuzz::as_string(data, size), "fuzz.cfg", info);
    const std::string written = amct::config_to_json(config);
    try {
      amct::parse_config_text(written, "written.json", info);
    } catch (const amct::Error& error) {
      std::fprintf(stderr, "the config written from a simple config is refused: %s\n%s\n", error.what(),
                   written.c_str());
      std::abort();
    }
  });
  return 0;
}
