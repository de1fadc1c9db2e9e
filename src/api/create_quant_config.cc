#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/model_prep.h"
#include "amct/quantize.h"

namespace amct {

void create_quant_config(const std::string& config_file, onnx::ModelProto exported,
                         std::vector<ModuleInfo> modules, const std::vector<std::string>& skip_layers,
                         int64_t batch_num, bool activation_offset, const std::string& simple_config_file,
                         bool quantize_subclasses, bool linear_channel_wise) {
  check_output_file_name(config_file, "config_file");
  check_no_quantization_modules(modules);
  // Which modules are layers depends on quantize_subclasses, which a simple
  // config sets itself.
  const std::string simple_text =
      simple_config_file.empty() ? "" : read_file(simple_config_file, "simple config file");
  PrepareOptions options;
  options.quantize_subclasses = simple_config_file.empty()
                                    ? quantize_subclasses
                                    : simple_config_quantizes_subclasses(simple_text, simple_config_file);
  const PreparedModel prepared = prepare_model(std::move(exported), std::move(modules), options);
  QuantConfig config;
  if (simple_config_file.empty()) {
    config = make_default_config(prepared.info, skip_layers, batch_num, activation_offset, linear_channel_wise);
    config.quantize_subclasses = quantize_subclasses;
  } else {
    config = make_config_from_simple_text(simple_text, simple_config_file, prepared.info);
  }
  write_file_atomic(config_file, config_to_json(config), "config_file");
}

}  // namespace amct
