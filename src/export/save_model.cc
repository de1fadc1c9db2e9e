// save_model (docs/amct-reference.md#save_model): checks the record against the modified ONNX, runs the
// save passes and writes the deploy, fake-quant and QDQ models. Each model
// goes to a temporary file as soon as it is built; the targets are replaced
// at the end as one FileSet: all of them, or none.
#include "amct/save_model.h"

#include <algorithm>
#include <optional>
#include <set>

#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/onnx_external_data.h"
#include "amct/onnx_graph.h"
#include "amct/onnx_validate.h"
#include "amct/opset_conversion.h"
#include "amct/record_check.h"
#include "amct/save_passes.h"
#include "amct/tensor_ranges.h"
#include "amct/weights_fingerprint.h"

namespace amct {
namespace {

constexpr size_t kMaxPrefixLength = 241;

void check_input_file_name(const std::string& path, const std::string& what) {
  if (path.empty()) invalid(what + ": an empty string is not a valid file name");
  if (path.back() == '/') invalid(what + " '" + path + "' must name a file, not a directory");
}

// The parent directory and file-name prefix of save_path.
std::pair<std::string, std::string> split_save_path(const std::string& save_path) {
  const size_t slash = save_path.rfind('/');
  if (slash == std::string::npos) return {"", save_path};
  return {save_path.substr(0, slash + 1), save_path.substr(slash + 1)};
}

// AMCT's parser drops graph inputs that are initializers; keeping them would
// declare the now-integer weights as float inputs of the outputs.
void drop_initializer_inputs(onnx::GraphProto& graph) {
  auto* inputs = graph.mutable_input();
  for (int i = inputs->size() - 1; i >= 0; --i)
    if (find_initializer(graph, inputs->Get(i).name())) inputs->DeleteSubrange(i, 1);
}

constexpr int64_t kMinQdqOpset = 13;  // per-axis DequantizeLinear

// The QDQ passes on a copy of the modified model, converted to the QDQ opset
// first. With `optional`, a model the QDQ form cannot hold is reported in
// `warnings` and nullopt returned instead of failing the whole save.
std::optional<onnx::ModelProto> build_qdq(onnx::ModelProto model, const QuantPlan& plan,
                                          const SaveOptions& options, const std::string& model_file,
                                          std::vector<std::string>& warnings);

// The modified model as the save passes take it. `expected`, when given, is
// what the first read found: the file must not have changed in between.
struct ModelIdentity {
  std::optional<std::string> fingerprint;
  size_t bytes = 0;
};

onnx::ModelProto read_modified_model(const std::string& path, std::set<std::string>* was_external,
                                     ModelIdentity* identity, const ModelIdentity* expected) {
  onnx::ModelProto model = load_onnx_model(path, was_external);
  const ModelIdentity found{model_fingerprint(model), model.ByteSizeLong()};
  if (expected && (found.fingerprint != expected->fingerprint || found.bytes != expected->bytes))
    fail(ErrorCode::kIoError, "modified ONNX file '" + path +
                                  "' changed while save_model was reading it (it is read once for the QDQ model and "
                                  "again for the deploy and fake-quant models); run save_model again");
  if (identity) *identity = found;
  return model;
}

// The plan of the QDQ model: `plan` and, for the full-INT8 model, the
// "tensor" entries of the record's tensor ranges sidecar.
QuantPlan with_tensor_ranges(const QuantPlan& plan, const onnx::GraphProto& graph, const std::string& record_file,
                             const std::string& model_file, SaveOptions::QdqMode mode) {
  QuantPlan out = plan;
  if (mode == SaveOptions::QdqMode::kLayers) return out;
  const std::string path = tensor_ranges_path(record_file);
  std::vector<TensorRange> ranges;
  try {
    ranges = read_tensor_ranges(path);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kNotFound) throw;
  }
  std::set<std::string> tensors;
  for (const auto& input : graph.input()) tensors.insert(input.name());
  for (const auto& node : graph.node()) tensors.insert(node.output().begin(), node.output().end());
  for (const TensorRange& range : ranges) {
    if (range.role != TensorRole::kTensor) continue;
    if (!tensors.count(range.layer))
      invalid("tensor ranges file '" + path + "': tensor '" + range.layer + "' is not in modified ONNX file '" +
              model_file + "'");
    out.tensor_ranges.emplace(range.layer, range);
  }
  if (mode == SaveOptions::QdqMode::kFull && out.tensor_ranges.empty())
    invalid("qdq_mode 'full' needs the tensor ranges that calibration writes to '" + path +
            "'; it has none (calibrate with the calibration model of this release, or use qdq_mode 'layers')");
  return out;
}

onnx::ModelProto finish(onnx::ModelProto model, const QuantPlan& plan, SaveStage stage) {
  run_save_passes(*model.mutable_graph(), plan, stage);
  topological_sort(*model.mutable_graph());
  return model;
}

}  // namespace

std::string output_model_path(const std::string& save_path, const std::string& kind) {
  if (kind != "deploy" && kind != "fake_quant" && kind != "qdq")
    invalid("unknown output model kind '" + kind + "'; expected \"deploy\", \"fake_quant\" or \"qdq\"");
  const auto [dir, prefix] = split_save_path(save_path);
  if (prefix.size() > kMaxPrefixLength)
    invalid("save_path '" + save_path + "': the file-name prefix has " + std::to_string(prefix.size()) +
            " characters; expected at most " + std::to_string(kMaxPrefixLength));
  return dir + (prefix.empty() ? "" : prefix + "_") + kind + "_model.onnx";
}

SaveResult save_model(const std::string& modified_onnx_file, const std::string& record_file,
                      const std::string& save_path, const SaveOptions& options) {
  check_input_file_name(modified_onnx_file, "modified ONNX file");
  check_input_file_name(record_file, "record file");
  if (!options.deploy && !options.fake_quant && !options.qdq) invalid("save_model: no output model selected");
  const std::string deploy_path = output_model_path(save_path, "deploy");
  const std::string fake_quant_path = output_model_path(save_path, "fake_quant");
  const std::string qdq_path = output_model_path(save_path, "qdq");

  if (options.external_data_limit == 0) invalid("save_model: external_data_limit must be at least 1 byte");
  std::set<std::string> was_external;
  ModelIdentity identity;
  onnx::ModelProto model = read_modified_model(modified_onnx_file, &was_external, &identity, nullptr);
  validate_onnx_model(model, modified_onnx_file);
  // Before the record checks: a record of another run fails them with
  // messages that do not say why.
  check_same_run(model, modified_onnx_file, record_file);
  const QuantPlan plan = read_quant_plan(record_file, model.graph(), modified_onnx_file);
  QuantPlan qdq_plan;
  if (options.qdq) qdq_plan = with_tensor_ranges(plan, model.graph(), record_file, modified_onnx_file, options.qdq_mode);
  if ((options.fake_quant || options.deploy) && default_opset(model) < 11)
    invalid("modified ONNX file '" + modified_onnx_file + "' uses opset " + std::to_string(default_opset(model)) +
            "; the fake-quant and deploy models need opset 11 or later (Clip with min/max inputs)");

  drop_initializer_inputs(*model.mutable_graph());
  SaveResult result;
  // Every output is staged (written to a temporary file) as soon as it is
  // built and then dropped, and the weights are rewritten where they lie
  // (float_values_in_place): the model is held once, plus one byte per
  // weight while it is integerized. The QDQ model is built from the model
  // itself, which is then read from its file again for AMCT's outputs
  // (reading is cheaper than a copy of GBs). The files are replaced together at the end,
  // under a lock on the output directory: one call's outputs are one set, or
  // the previous files stay (a deploy model beside another run's QDQ model
  // would look like a finished run).
  FileSet files;
  // AMCT's external files for its own outputs; ONNX's "<file>.data" for ours.
  const auto rule = [&](const std::string& per_tensor_suffix) {
    ExternalDataRule r;
    r.limit = options.external_data_limit;
    r.per_tensor_suffix = per_tensor_suffix;
    r.always = was_external;
    return r;
  };
  bool qdq_staged = false;
  if (options.qdq) {
    std::optional<onnx::ModelProto> qdq = build_qdq(std::move(model), qdq_plan, options, modified_onnx_file, result.warnings);
    if (qdq) {
      stage_onnx_model(files, std::move(*qdq), qdq_path, rule(""));
      qdq_staged = true;
    }
    if (options.fake_quant || options.deploy) {
      model = read_modified_model(modified_onnx_file, nullptr, nullptr, &identity);
      drop_initializer_inputs(*model.mutable_graph());
    }
  }
  if (options.fake_quant || options.deploy) run_save_passes(*model.mutable_graph(), plan, SaveStage::kCommon);
  // The deploy model from a copy of the integer weights, then the fake-quant
  // model from the model itself: its float weights are never held beside a
  // second model.
  if (options.deploy) {
    onnx::ModelProto deploy;
    if (options.fake_quant)
      deploy = model;
    else
      deploy.Swap(&model);
    stage_onnx_model(files, finish(std::move(deploy), plan, SaveStage::kDeploy), deploy_path, rule("_deploy.external"));
  }
  if (options.fake_quant)
    stage_onnx_model(files, finish(std::move(model), plan, SaveStage::kFakeQuant), fake_quant_path,
                     rule("_fakequant.external"));
  if (options.deploy) result.written.push_back(deploy_path);
  if (options.fake_quant) result.written.push_back(fake_quant_path);
  if (qdq_staged) result.written.push_back(qdq_path);
  files.commit();
  return result;
}

namespace {

std::optional<onnx::ModelProto> build_qdq(onnx::ModelProto model, const QuantPlan& plan,
                                          const SaveOptions& options, const std::string& model_file,
                                          std::vector<std::string>& warnings) {
  const int64_t opset = options.qdq_opset != 0 ? options.qdq_opset : std::max(kMinQdqOpset, default_opset(model));
  try {
    if (opset < kMinQdqOpset)
      invalid("the QDQ model needs opset " + std::to_string(kMinQdqOpset) + " or later (per-axis DequantizeLinear); " +
              "qdq_opset is " + std::to_string(opset));
    if (opset != default_opset(model)) convert_opset(model, opset);
    return finish(std::move(model), plan, SaveStage::kQdq);
  } catch (const Error& e) {
    const std::string message = "modified ONNX file '" + model_file + "': the QDQ model cannot be written at opset " +
                                std::to_string(opset) + ": " + e.what();
    if (!options.qdq_optional) fail(e.code(), message);
    warnings.push_back(message + "; the QDQ model was skipped (the deploy and fake-quant models are written)");
    return std::nullopt;
  }
}

}  // namespace

}  // namespace amct
