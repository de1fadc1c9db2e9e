// The model that calibration runs in ONNX Runtime to measure the full-INT8
// QDQ model's extra tensors (qdq_tensors.h).
#include <set>

#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/opset_conversion.h"
#include "amct/qdq_tensors.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

constexpr int64_t kObservationOpset = 13;

}  // namespace

std::string qdq_observation_model(const std::string& model_file, const std::vector<std::string>& tensors) {
  onnx::ModelProto model = load_onnx_model(model_file);
  // At the QDQ model's opset (at least 13), as save_model converts it: at
  // AMCT's opset 11 Runtime refuses some exported forms (Max on INT64).
  if (default_opset(model) < kObservationOpset) convert_opset(model, kObservationOpset);
  onnx::GraphProto& graph = *model.mutable_graph();
  remove_op_data_type_pass(graph, QuantPlan{});
  std::set<std::string> present;
  for (const auto& input : graph.input()) present.insert(input.name());
  for (const auto& node : graph.node()) present.insert(node.output().begin(), node.output().end());
  std::set<std::string> outputs;
  for (const auto& output : graph.output()) outputs.insert(output.name());
  for (const std::string& tensor : tensors) {
    if (!present.count(tensor))
      invalid("modified ONNX file '" + model_file + "' has no tensor '" + tensor + "' to calibrate");
    // A graph output already is one; its type stays declared.
    if (outputs.insert(tensor).second) graph.add_output()->set_name(tensor);
  }
  return serialize_onnx_model(model, model_file);
}

}  // namespace amct
