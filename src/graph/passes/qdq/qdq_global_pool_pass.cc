// QdqGlobalPool (full-INT8 QDQ model): a mean over all spatial axes becomes
// GlobalAveragePool.
//
// torch.onnx writes adaptive_avg_pool2d(x, 1) (squeeze-excite, the pooling
// before a classifier) as ReduceMean over the last two axes. ONNX Runtime
// has no integer kernel for ReduceMean, so it dequantizes the whole
// activation for it; GlobalAveragePool between DequantizeLinear and
// QuantizeLinear runs as QLinearGlobalAveragePool on the integers. Both
// compute the same mean. The full-INT8 tensor list (qdq_tensor_list.cc)
// treats such a ReduceMean as an integer op, so calibration measures its
// input and output; a ReduceMean whose tensors have no ranges stays.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// ReduceMean's axes: the attribute (opset < 18) or the constant second input.
std::optional<std::vector<int64_t>> mean_axes(const GraphIndex& index, const onnx::NodeProto& node) {
  if (node.input_size() < 2 || node.input(1).empty()) {
    if (!find_attribute(node, "axes")) return std::nullopt;  // all axes, batch included
    return get_ints_attribute(node, "axes");
  }
  const onnx::TensorProto* axes = index.resolve_constant(node.input(1));
  return axes ? qdq_int64_values(*axes) : std::nullopt;
}

}  // namespace

QdqDeclaredRanks qdq_declared_ranks(const onnx::GraphProto& graph) {
  QdqDeclaredRanks ranks;
  for (const auto* list : {&graph.input(), &graph.value_info(), &graph.output()})
    for (const onnx::ValueInfoProto& info : *list)
      if (info.type().has_tensor_type() && info.type().tensor_type().has_shape())
        ranks.emplace(info.name(), info.type().tensor_type().shape().dim_size());
  return ranks;
}

bool qdq_is_global_mean(const GraphIndex& index, const QdqDeclaredRanks& ranks, const onnx::NodeProto& node) {
  if (node.op_type() != "ReduceMean" || node.input_size() < 1 || node.output_size() != 1) return false;
  if (get_int_attribute(node, "keepdims", 1) != 1 || get_int_attribute(node, "noop_with_empty_axes", 0) != 0)
    return false;
  const auto declared = ranks.find(node.input(0));
  if (declared == ranks.end() || declared->second < 3) return false;
  const int rank = declared->second;
  std::optional<std::vector<int64_t>> axes = mean_axes(index, node);
  if (!axes || axes->size() != static_cast<size_t>(rank - 2)) return false;
  for (int64_t& axis : *axes) {
    if (axis < -rank || axis >= rank) return false;
    if (axis < 0) axis += rank;
  }
  std::sort(axes->begin(), axes->end());
  for (size_t i = 0; i < axes->size(); ++i)
    if ((*axes)[i] != static_cast<int64_t>(i) + 2) return false;
  return true;
}

void qdq_global_pool_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  if (plan.tensor_ranges.empty()) return;
  const GraphIndex index(graph);
  const QdqDeclaredRanks ranks = qdq_declared_ranks(graph);
  std::vector<onnx::NodeProto*> means;
  for (onnx::NodeProto& node : *graph.mutable_node())
    if (qdq_is_global_mean(index, ranks, node) && plan.tensor_ranges.count(node.input(0)) > 0 &&
        plan.tensor_ranges.count(node.output(0)) > 0)
      means.push_back(&node);
  std::vector<std::string> axes;
  for (onnx::NodeProto* node : means) {
    if (node->input_size() > 1) axes.push_back(node->input(1));
    node->set_op_type("GlobalAveragePool");
    node->mutable_input()->DeleteSubrange(1, node->input_size() - 1);
    node->clear_attribute();
  }
  qdq_drop_unread(graph, axes);
}

}  // namespace amct
