// torch 2.13's exporter gives a bias-less conv a computed zero bias
// (Shape(weight) -> Expand -> CastLike -> Expand). The fusion and weight
// passes need every weight and bias as an initializer, so such constant
// sub-graphs feeding a layer's bias are evaluated here; an all-zero bias is
// removed.
#include <algorithm>
#include <optional>

#include "amct/model_prep.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

struct ConstantValue {
  std::vector<int64_t> dims;
  std::vector<double> values;
  bool is_float = true;
};

int64_t count(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::optional<ConstantValue> from_tensor(const onnx::TensorProto& t) {
  ConstantValue c;
  c.dims = tensor_dims(t);
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::DOUBLE:
      for (float v : tensor_to_floats(t)) c.values.push_back(v);
      return c;
    case onnx::TensorProto::INT64:
      c.is_float = false;
      if (t.has_raw_data()) {
        const auto* data = reinterpret_cast<const int64_t*>(t.raw_data().data());
        c.values.assign(data, data + t.raw_data().size() / sizeof(int64_t));
      } else {
        c.values.assign(t.int64_data().begin(), t.int64_data().end());
      }
      return c;
    default:
      return std::nullopt;
  }
}

// numpy-style broadcast of `in` to `shape` (ranks aligned on the right).
std::optional<ConstantValue> broadcast(const ConstantValue& in, std::vector<int64_t> shape) {
  const size_t rank = std::max(shape.size(), in.dims.size());
  std::vector<int64_t> src(rank, 1), dst(rank, 1);
  std::copy(in.dims.begin(), in.dims.end(), src.begin() + static_cast<long>(rank - in.dims.size()));
  std::copy(shape.begin(), shape.end(), dst.begin() + static_cast<long>(rank - shape.size()));
  for (size_t i = 0; i < rank; ++i) {
    if (src[i] != 1 && dst[i] != 1 && src[i] != dst[i]) return std::nullopt;
    dst[i] = std::max(src[i], dst[i]);
  }
  ConstantValue out{dst, std::vector<double>(static_cast<size_t>(count(dst))), in.is_float};
  for (int64_t flat = 0; flat < count(dst); ++flat) {
    int64_t rest = flat, src_index = 0, src_stride = 1;
    for (size_t i = rank; i-- > 0;) {
      const int64_t coord = rest % dst[i];
      rest /= dst[i];
      if (src[i] != 1) src_index += coord * src_stride;
      src_stride *= src[i];
    }
    out.values[static_cast<size_t>(flat)] = in.values[static_cast<size_t>(src_index)];
  }
  return out;
}

std::optional<ConstantValue> evaluate(const onnx::GraphProto& graph, const std::string& tensor, int depth) {
  if (depth > 16 || tensor.empty()) return std::nullopt;
  if (const auto* init = find_initializer(graph, tensor)) return from_tensor(*init);
  const onnx::NodeProto* node = nullptr;
  for (const auto& n : graph.node())
    for (const auto& out : n.output())
      if (out == tensor) node = &n;
  if (!node) return std::nullopt;
  const std::string& op = node->op_type();
  if (op == "Constant") {
    if (const auto* a = find_attribute(*node, "value"); a && a->has_t()) return from_tensor(a->t());
    if (const auto* a = find_attribute(*node, "value_ints"))
      return ConstantValue{{a->ints_size()}, {a->ints().begin(), a->ints().end()}, false};
    if (const auto* a = find_attribute(*node, "value_int")) return ConstantValue{{}, {double(a->i())}, false};
    if (const auto* a = find_attribute(*node, "value_float")) return ConstantValue{{}, {a->f()}, true};
    return std::nullopt;
  }
  if (op == "Shape") {
    const onnx::TensorProto* source = resolve_constant(graph, node->input(0));
    if (!source) return std::nullopt;
    const auto dims = tensor_dims(*source);
    const auto rank = static_cast<int64_t>(dims.size());
    int64_t start = get_int_attribute(*node, "start", 0), end = get_int_attribute(*node, "end", rank);
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, start, rank);
    ConstantValue c{{end - start}, {}, false};
    for (int64_t i = start; i < end; ++i) c.values.push_back(static_cast<double>(dims[static_cast<size_t>(i)]));
    return c;
  }
  if (op == "Expand") {
    auto value = evaluate(graph, node->input(0), depth + 1);
    auto shape = evaluate(graph, node->input(1), depth + 1);
    if (!value || !shape) return std::nullopt;
    return broadcast(*value, std::vector<int64_t>(shape->values.begin(), shape->values.end()));
  }
  if (op == "CastLike" || op == "Cast") {
    auto value = evaluate(graph, node->input(0), depth + 1);
    if (!value) return std::nullopt;
    bool to_float = true;
    if (op == "Cast") {
      const int64_t to = get_int_attribute(*node, "to", onnx::TensorProto::FLOAT);
      to_float = to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::FLOAT16 || to == onnx::TensorProto::DOUBLE;
    }
    value->is_float = to_float;
    return value;
  }
  return std::nullopt;
}

}  // namespace

void materialize_constant_bias(onnx::GraphProto& graph) {
  for (auto& node : *graph.mutable_node()) {
    const std::string& op = node.op_type();
    if ((op != "Conv" && op != "ConvTranspose" && op != "Gemm") || node.input_size() < 3 || node.input(2).empty())
      continue;
    if (find_initializer(graph, node.input(2))) continue;
    const auto value = evaluate(graph, node.input(2), 0);
    if (!value || !value->is_float) continue;
    std::vector<float> values(value->values.begin(), value->values.end());
    // A zero bias is what torch computes for bias=False: drop it, as AMCT's
    // exports have no bias there (Conv+BN fusion adds one when it needs it).
    if (std::all_of(values.begin(), values.end(), [](float v) { return v == 0.0f; }) && node.input_size() == 3) {
      node.mutable_input()->RemoveLast();
      continue;
    }
    const std::string name = node.name() + ".bias";
    if (find_initializer(graph, name)) continue;
    *graph.add_initializer() = make_float_tensor(name, value->dims, values);
    node.set_input(2, name);
  }
  remove_dead_nodes(graph);
}

}  // namespace amct
