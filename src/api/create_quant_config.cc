#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/model_prep.h"
#include "amct/quantize.h"

namespace amct {

void create_quant_config(const std::string& config_file, onnx::ModelProto exported,
                         std::vector<ModuleInfo> modules, const std::vector<std::string>& skip_layers,
                         int64_t batch_num, bool activation_offset, const std::string& simple_config_file) {
  check_output_file_name(config_file, "config_file");
  check_no_quantization_modules(modules);
  const PreparedModel prepared = prepare_model(std::move(exported), std::move(modules));
  const QuantConfig config = simple_config_file.empty()
                                 ? make_default_config(prepared.info, skip_layers, batch_num, activation_offset)
                                 : make_config_from_simple(simple_config_file, prepared.info);
  write_file_atomic(config_file, config_to_json(config), "config_file");
}

}  // namespace amct
