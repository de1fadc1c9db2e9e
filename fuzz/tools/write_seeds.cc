// Writes the generated seeds of fuzz/corpus/: the fixed model in both forms,
// its record, a config JSON and simple config for the example-config model
// and a tensor-ranges file. Run from the repository root after changing
// fuzz_support.h: ./build/clang/fuzz_write_seeds fuzz/corpus
#include <filesystem>
#include <iostream>

#include "amct/config.h"
#include "amct/file_io.h"
#include "amct/tensor_ranges.h"
#include "fuzz_support.h"

namespace {

// A model whose one initializer lies in the external file `location` of
// onnx_external_data's sandbox.
std::string external_seed(const std::string& location, int64_t elements) {
  onnx::ModelProto model = amct::fuzz::fixed_model(false);
  onnx::TensorProto& tensor = *model.mutable_graph()->add_initializer();
  tensor.set_name("external");
  tensor.set_data_type(onnx::TensorProto::FLOAT);
  tensor.add_dims(elements);
  tensor.set_data_location(onnx::TensorProto::EXTERNAL);
  const std::pair<const char*, std::string> entries[] = {
      {"location", location}, {"offset", "0"}, {"length", std::to_string(elements * 4)}};
  for (const auto& [key, value] : entries) {
    auto* entry = tensor.add_external_data();
    entry->set_key(key);
    entry->set_value(value);
  }
  return model.SerializeAsString();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_write_seeds <corpus dir>\n";
    return 2;
  }
  const std::filesystem::path root = argv[1];
  const auto write = [&](const std::string& target, const std::string& name, const std::string& data) {
    amct::write_file_atomic((root / target / name).string(), data, "seed");
  };
  write("onnx_save", "fixed_model.onnx", amct::fuzz::fixed_model(false).SerializeAsString());
  write("onnx_prepare", "exported_model.onnx", amct::fuzz::fixed_model(true).SerializeAsString());
  write("record_reader", "fixed_record.txt", amct::fuzz::fixed_record());
  write("onnx_external_data", "inside.onnx", external_seed("w.bin", 16));
  write("onnx_external_data", "subdirectory.onnx", external_seed("sub/v.bin", 4));
  write("onnx_external_data", "link_outside.onnx", external_seed("link.bin", 16));
  write("onnx_external_data", "parent_outside.onnx", external_seed("../secret.bin", 16));
  const amct::ModelInfo info = amct::fuzz::config_model_info();
  write("config_json", "default.json", amct::config_to_json(amct::make_default_config(info, {"dw"}, 2, true)));
  write("simple_config", "ifmr_common.cfg",
        "batch_num: 4\nactivation_offset: false\nskip_layer_types: \"AvgPool2d\"\n"
        "common_config {\n  ifmr_quantize { search_range_start: 0.7 search_range_end: 1.3 search_step: 0.01 "
        "max_percentile: 0.999999 min_percentile: 0.999999 }\n  arq_quantize { quant_bits: 8 }\n}\n"
        "override_layer_configs {\n  layer_name: \"fc\"\n  calibration_config { ada_quantize { num_iteration: 100 "
        "reg_param: 0.01 beta_range_start: 20 beta_range_end: 2 warm_start: 0.2 } }\n}\n");
  write("tensor_ranges", "two_entries.json",
        amct::tensor_ranges_json({{"fc", amct::TensorRole::kOutput, 0.03125f, -4, 8},
                                  {"conv1", amct::TensorRole::kInput, 0.5f, 0, 16}}));
  return 0;
}
