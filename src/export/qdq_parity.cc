#include "amct/qdq_parity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {

ParityMetrics parity_metrics(std::span<const float> reference, std::span<const float> other, const std::string& what) {
  if (reference.size() != other.size())
    invalid(what + ": the arrays have " + std::to_string(reference.size()) + " and " + std::to_string(other.size()) +
            " elements; expected the same shape");
  ParityMetrics m;
  m.count = static_cast<int64_t>(reference.size());
  if (reference.empty()) return m;
  double dot = 0.0, ref_sq = 0.0, other_sq = 0.0, noise_sq = 0.0;
  float lo = reference[0], hi = reference[0];
  for (size_t i = 0; i < reference.size(); ++i) {
    const double r = reference[i], o = other[i], d = r - o;
    dot += r * o;
    ref_sq += r * r;
    other_sq += o * o;
    noise_sq += d * d;
    m.max_abs_error = std::max(m.max_abs_error, std::abs(d));
    lo = std::min(lo, reference[i]);
    hi = std::max(hi, reference[i]);
  }
  const double norms = std::sqrt(ref_sq) * std::sqrt(other_sq);
  m.cosine = norms > 0.0 ? dot / norms : (ref_sq == other_sq ? 1.0 : 0.0);
  m.sqnr_db = noise_sq > 0.0 ? 10.0 * std::log10(ref_sq / noise_sq) : std::numeric_limits<double>::infinity();
  m.step = (static_cast<double>(hi) - static_cast<double>(lo)) / 255.0;
  int64_t within = 0;
  for (size_t i = 0; i < reference.size(); ++i)
    if (std::abs(static_cast<double>(reference[i]) - other[i]) <= m.step) ++within;
  m.within_step = static_cast<double>(within) / static_cast<double>(m.count);
  return m;
}

std::vector<std::string> fake_quant_layers(const onnx::ModelProto& fake_quant) {
  constexpr std::string_view kSuffix = ".fakedequant.mul";
  std::vector<std::string> layers;
  for (const auto& node : fake_quant.graph().node()) {
    const std::string& name = node.name();
    if (name.size() > kSuffix.size() && name.ends_with(kSuffix))
      layers.push_back(name.substr(0, name.size() - kSuffix.size()));
  }
  return layers;
}

std::vector<LayerTensor> layer_result_tensors(const onnx::ModelProto& model, const std::vector<std::string>& layers) {
  onnx::GraphProto graph = model.graph();
  std::vector<LayerTensor> found;
  for (const auto& layer : layers) {
    onnx::NodeProto* node = find_node(graph, layer);
    if (!node || node->output_size() == 0) continue;
    onnx::NodeProto* bias_add = node->op_type() == "MatMul" ? matmul_bias_add(graph, *node) : nullptr;
    const std::string prefix = layer + ".";
    // A QDQ layer requantized onto its consumer's grid (which also clips at
    // that grid's range, e.g. a following Relu's zero) is compared before
    // that step: the consumer quantizes the same way in both models. A
    // regrouped ConvTranspose has no such float tensor in its own layout, so
    // it is compared after its DepthToSpace.
    std::string before_requantize;
    for (;;) {
      const std::string& tensor = node->output(0);
      if (is_graph_output(graph, tensor)) break;
      const auto consumers = find_consumers(graph, tensor);
      if (consumers.size() != 1 || (consumers[0] != bias_add && !consumers[0]->name().starts_with(prefix))) break;
      node = consumers[0];
      if (node->name() == prefix + "output_quant") before_requantize = tensor;
      if (node->name() == prefix + "depth_to_space") before_requantize.clear();
    }
    found.push_back({layer, before_requantize.empty() ? node->output(0) : before_requantize});
  }
  return found;
}

void expose_tensors(onnx::ModelProto& model, const std::vector<LayerTensor>& tensors) {
  onnx::GraphProto& graph = *model.mutable_graph();
  for (const auto& [layer, tensor] : tensors) {
    if (is_graph_output(graph, tensor)) continue;
    auto* output = graph.add_output();
    output->set_name(tensor);
    output->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
}

namespace {

std::unordered_map<std::string, std::string> producer_names(const onnx::GraphProto& graph) {
  std::unordered_map<std::string, std::string> names;
  for (const auto& node : graph.node())
    for (const auto& output : node.output()) names.emplace(output, node.name());
  return names;
}

}  // namespace

std::vector<FedInput> feed_reference_inputs(onnx::ModelProto& qdq, const onnx::ModelProto& reference,
                                            const std::vector<std::string>& layers) {
  // A tensor both models compute with the same node is the same value,
  // except a layer's result: the QDQ model gives the original name to the
  // dequantized result, the fake-quant model to the integer accumulator
  // before its dequant Mul (the node is "<L>" in both for a QDQ Gemm), so
  // layer results are mapped first, to the reference's result tensors.
  const auto qdq_producers = producer_names(qdq.graph());
  const auto reference_producers = producer_names(reference.graph());
  std::unordered_map<std::string, std::string> reference_results;
  for (const auto& [layer, tensor] : layer_result_tensors(reference, layers)) reference_results.emplace(layer, tensor);
  std::unordered_map<std::string, std::string> source;
  for (const auto& [layer, tensor] : layer_result_tensors(qdq, layers))
    if (const auto it = reference_results.find(layer); it != reference_results.end()) source.emplace(tensor, it->second);
  for (const auto& [tensor, producer] : qdq_producers) {
    const auto it = reference_producers.find(tensor);
    if (it != reference_producers.end() && it->second == producer) source.emplace(tensor, tensor);
  }

  std::unordered_set<std::string> quantizers;
  for (const auto& layer : layers) quantizers.insert(layer + ".input_quant");
  onnx::GraphProto& graph = *qdq.mutable_graph();
  // Layers sharing one QuantizeLinear, or quantizing one tensor with
  // different factors, read the same new input.
  std::map<std::string, FedInput> fed;
  for (auto& node : *graph.mutable_node()) {
    if (node.op_type() != "QuantizeLinear" || !quantizers.count(node.name()) || node.input_size() == 0) continue;
    const auto from = source.find(node.input(0));
    if (from == source.end()) continue;
    auto it = fed.find(node.input(0));
    if (it == fed.end()) {
      it = fed.emplace(node.input(0), FedInput{node.input(0) + ".reference", from->second}).first;
      auto* input = graph.add_input();
      input->set_name(it->second.input);
      input->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    }
    node.set_input(0, it->second.input);
  }
  std::vector<FedInput> result;
  for (const auto& [tensor, input] : fed) result.push_back(input);
  return result;
}

}  // namespace amct
