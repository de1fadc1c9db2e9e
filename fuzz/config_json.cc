// libFuzzer target: the config JSON reader (parse_config_text) against the
// example-config model. A config it accepts must also survive a round trip
// through the writer: we never write a config our own reader refuses.
#include <cstdio>
#include <cstdlib>

#include "amct/config.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const amct::ModelInfo info = amct::fuzz::config_model_info();
  amct::fuzz::expect_clear_error([&] {
    const amct::QuantConfig config = amct::parse_config_text(amct::fuzz::as_string(data, size), "fuzz.json", info);
    const std::string written = amct::config_to_json(config);
    try {
      amct::parse_config_text(written, "written.json", info);
    } catch (const amct::Error& error) {
      std::fprintf(stderr, "the config we wrote is refused: %s\n%s\n", error.what(), written.c_str());
      std::abort();
    }
  });
  return 0;
}
