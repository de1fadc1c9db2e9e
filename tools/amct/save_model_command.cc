// amct save-model: the save_model API on files, for use without Python.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "amct/save_model.h"
#include "commands.h"

namespace amct::cli {
namespace {

constexpr char kUsage[] =
    "usage: amct save-model --model MODIFIED.onnx --record RECORD.txt --save-path DIR/PREFIX\n"
    "                       [--outputs deploy,fake_quant,qdq] [--qdq-opset N]\n"
    "                       [--external-data-limit BYTES] [--qdq-mode full|layers]\n"
    "\n"
    "Writes DIR/PREFIX_deploy_model.onnx (AscendQuant/AscendDequant),\n"
    "DIR/PREFIX_fake_quant_model.onnx (standard ONNX ops) and\n"
    "DIR/PREFIX_qdq_model.onnx (QuantizeLinear/DequantizeLinear with INT8\n"
    "weights, run by ONNX Runtime with integer kernels) from the modified ONNX\n"
    "of quantize_model and its calibrated record file. A save path ending in '/'\n"
    "writes DIR/deploy_model.onnx, DIR/fake_quant_model.onnx and DIR/qdq_model.onnx.\n"
    "The files are replaced together or not at all, and concurrent runs on one\n"
    "save path leave the files of one run. A record written with another\n"
    "modified ONNX (see RECORD.txt.amct.json) is refused. A modified ONNX with\n"
    "its weights in external data files (ONNX external data) is read with them;\n"
    "a model of 2,000,000,000 bytes or more keeps its largest initializers in\n"
    "DIR/<initializer>_deploy.external, DIR/<initializer>_fakequant.external and\n"
    "DIR/PREFIX_qdq_model.onnx.data, replaced together with the models.\n"
    "\n"
    "options:\n"
    "  --model PATH       modified ONNX model written by quantize_model\n"
    "  --record PATH      record file after calibration\n"
    "  --save-path PATH   output directory and file-name prefix\n"
    "  --outputs LIST     comma-separated: deploy, fake_quant, qdq (default: all; without\n"
    "                     this option a model the QDQ form cannot hold skips it with a warning)\n"
    "  --qdq-opset N      opset of the QDQ model (default: the model's, at least 13)\n"
    "  --qdq-mode MODE    full: every calibrated tensor in INT8 (needs RECORD.txt.ranges.json);\n"
    "                     layers: the layers only (default: full when the ranges exist)\n"
    "  --external-data-limit BYTES\n"
    "                     model size from which initializers move to external data\n"
    "                     files (default: 2000000000)\n"
    "  -h, --help         show this help\n";

SaveOptions parse_outputs(const std::string& list) {
  SaveOptions options{false, false, false};
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, comma - start);
    if (item == "deploy") {
      options.deploy = true;
    } else if (item == "fake_quant") {
      options.fake_quant = true;
    } else if (item == "qdq") {
      options.qdq = true;
    } else {
      throw UsageError("--outputs: unknown output '" + item + "'; expected deploy, fake_quant and/or qdq");
    }
    start = comma + 1;
  }
  return options;
}

bool is_option(const std::string& name) {
  return name == "--model" || name == "--record" || name == "--save-path" || name == "--outputs" ||
         name == "--qdq-opset" || name == "--external-data-limit" || name == "--qdq-mode";
}

int64_t parse_opset(const std::string& text) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw UsageError("--qdq-opset: '" + text + "' is not an integer");
  return value;
}

size_t parse_limit(const std::string& text) {
  const bool digits = !text.empty() && text.size() <= 18 &&
                      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || std::stoull(text) == 0)
    throw UsageError("--external-data-limit: '" + text + "' is not a positive number of bytes");
  return std::stoull(text);
}

// --name VALUE or --name=VALUE for the options listed in `values`.
std::map<std::string, std::string> parse_options(std::span<const std::string> args) {
  std::map<std::string, std::string> values;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::string value;
    const size_t equals = name.find('=');
    if (equals != std::string::npos) {
      value = name.substr(equals + 1);
      name.resize(equals);
    } else if (is_option(name)) {
      if (i + 1 == args.size()) throw UsageError(name + " needs a value");
      value = args[++i];
    }
    if (!is_option(name))
      throw UsageError("unknown argument '" + args[i] + "'");
    if (values.count(name)) throw UsageError(name + " is given more than once");
    values[name] = value;
  }
  return values;
}

int run(std::span<const std::string> args) {
  for (const auto& arg : args)
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  const auto values = parse_options(args);
  for (const char* required : {"--model", "--record", "--save-path"})
    if (!values.count(required)) throw UsageError(std::string(required) + " is required");
  SaveOptions options = values.count("--outputs") ? parse_outputs(values.at("--outputs")) : SaveOptions{};
  options.qdq_optional = !values.count("--outputs");
  if (values.count("--qdq-opset")) options.qdq_opset = parse_opset(values.at("--qdq-opset"));
  if (values.count("--qdq-mode")) {
    const std::string& mode = values.at("--qdq-mode");
    if (mode != "full" && mode != "layers") throw UsageError("--qdq-mode: '" + mode + "'; expected full or layers");
    options.qdq_mode = mode == "full" ? SaveOptions::QdqMode::kFull : SaveOptions::QdqMode::kLayers;
  }
  if (values.count("--external-data-limit")) options.external_data_limit = parse_limit(values.at("--external-data-limit"));
  const SaveResult result = save_model(values.at("--model"), values.at("--record"), values.at("--save-path"), options);
  for (const auto& warning : result.warnings) std::fprintf(stderr, "warning: %s\n", warning.c_str());
  for (const auto& path : result.written) std::printf("%s\n", path.c_str());
  return 0;
}

}  // namespace

const Command kSaveModelCommand = {"save-model", "write the deploy, fake-quant and QDQ models from a calibrated record",
                                   kUsage, run};

}  // namespace amct::cli
