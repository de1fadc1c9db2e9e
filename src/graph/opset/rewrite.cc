#include "rewrite.h"

#include <cstring>

#include "amct/error.h"
#include "amct/onnx_graph.h"

namespace amct::opset {

std::optional<onnx::TensorProto> constant_node_value(const onnx::NodeProto& node) {
  for (const auto& a : node.attribute()) {
    onnx::TensorProto t;
    if (a.name() == "value") return a.t();
    if (a.name() == "value_float") {
      t.set_data_type(onnx::TensorProto::FLOAT);
      t.add_float_data(a.f());
    } else if (a.name() == "value_floats") {
      t.set_data_type(onnx::TensorProto::FLOAT);
      t.add_dims(a.floats_size());
      for (float f : a.floats()) t.add_float_data(f);
    } else if (a.name() == "value_int") {
      t.set_data_type(onnx::TensorProto::INT64);
      t.add_int64_data(a.i());
    } else if (a.name() == "value_ints") {
      t.set_data_type(onnx::TensorProto::INT64);
      t.add_dims(a.ints_size());
      for (int64_t i : a.ints()) t.add_int64_data(i);
    } else if (a.name() == "value_string") {
      t.set_data_type(onnx::TensorProto::STRING);
      t.add_string_data(a.s());
    } else if (a.name() == "value_strings") {
      t.set_data_type(onnx::TensorProto::STRING);
      t.add_dims(a.strings_size());
      for (const auto& s : a.strings()) t.add_string_data(s);
    } else {
      continue;
    }
    return t;
  }
  return std::nullopt;
}

namespace {

std::optional<std::vector<int64_t>> tensor_ints(const onnx::TensorProto& t) {
  const auto n = static_cast<size_t>(tensor_numel(t));
  std::vector<int64_t> out;
  out.reserve(n);
  if (t.data_type() == onnx::TensorProto::INT64) {
    if (t.has_raw_data()) {
      if (t.raw_data().size() != n * 8) return std::nullopt;
      out.resize(n);
      std::memcpy(out.data(), t.raw_data().data(), n * 8);
    } else {
      out.assign(t.int64_data().begin(), t.int64_data().end());
    }
  } else if (t.data_type() == onnx::TensorProto::INT32) {
    if (t.has_raw_data()) {
      if (t.raw_data().size() != n * 4) return std::nullopt;
      for (size_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, t.raw_data().data() + 4 * i, 4);
        out.push_back(v);
      }
    } else {
      out.assign(t.int32_data().begin(), t.int32_data().end());
    }
  } else {
    return std::nullopt;
  }
  if (out.size() != n) return std::nullopt;
  return out;
}

}  // namespace

Context::Context(onnx::GraphProto& graph, UsedNames& names, int64_t source, int64_t target)
    : graph_(graph), names_(names), source_(source), target_(target) {
  for (const auto& n : graph.node())
    for (const auto& out : n.output())
      if (!out.empty()) producers_[out] = &n;
  for (const auto& t : graph.initializer()) initializers_[t.name()] = &t;
  for (const auto* list : {&graph.input(), &graph.output(), &graph.value_info()})
    for (const auto& vi : *list) value_infos_[vi.name()] = &vi;
}

const onnx::NodeProto* Context::producer(const std::string& tensor) const {
  auto it = producers_.find(tensor);
  return it == producers_.end() ? nullptr : it->second;
}

std::optional<onnx::TensorProto> Context::constant(const std::string& tensor) const {
  std::string name = tensor;
  // Identity chains are short; the bound only guards against a malformed cycle.
  for (int hops = 0; hops < 64 && !name.empty(); ++hops) {
    if (auto it = initializers_.find(name); it != initializers_.end()) return *it->second;
    const auto* node = producer(name);
    if (!node || !(node->domain().empty() || node->domain() == "ai.onnx")) return std::nullopt;
    if (node->op_type() == "Constant") return constant_node_value(*node);
    if (node->op_type() != "Identity" || node->input_size() != 1) return std::nullopt;
    name = node->input(0);
  }
  return std::nullopt;
}

std::optional<std::vector<int64_t>> Context::constant_ints(const std::string& tensor) const {
  // The exporter builds axes and shapes as Reshape/Unsqueeze of constants, or
  // a Concat of such parts; these keep the values, only the shape differs.
  const auto resolve = [this](std::string name) -> std::optional<std::vector<int64_t>> {
    for (int hops = 0; hops < 64; ++hops) {
      if (const auto t = constant(name)) return tensor_ints(*t);
      const onnx::NodeProto* node = producer(name);
      if (!node || node->input_size() == 0) return std::nullopt;
      const std::string& op = node->op_type();
      if (op != "Reshape" && op != "Squeeze" && op != "Unsqueeze" && op != "Flatten") return std::nullopt;
      name = node->input(0);
    }
    return std::nullopt;
  };
  if (auto values = resolve(tensor)) return values;
  const onnx::NodeProto* node = producer(tensor);
  if (node && node->op_type() == "Range" && node->input_size() == 3) return constant_range(*node);
  // Along axis 0 a Concat appends the parts' values in order, whatever their rank.
  if (!node || node->op_type() != "Concat" || get_int_attribute(*node, "axis", -1) != 0) return std::nullopt;
  std::vector<int64_t> joined;
  for (const auto& part : node->input()) {
    const auto values = resolve(part);
    if (!values) return std::nullopt;
    joined.insert(joined.end(), values->begin(), values->end());
  }
  return joined;
}

std::optional<std::vector<int64_t>> Context::constant_range(const onnx::NodeProto& range) const {
  // torch's GroupNorm builds its Unsqueeze axes as Range(1, rank - 1): the
  // bounds are scalar constants or one Add/Sub/Mul of them.
  const auto scalar = [this](const std::string& name) -> std::optional<int64_t> {
    const auto single = [this](const std::string& n) -> std::optional<int64_t> {
      const auto t = constant(n);
      const auto values = t ? tensor_ints(*t) : std::nullopt;
      return values && values->size() == 1 ? std::optional<int64_t>(values->front()) : std::nullopt;
    };
    if (const auto value = single(name)) return value;
    const onnx::NodeProto* node = producer(name);
    if (!node || node->input_size() != 2) return std::nullopt;
    const auto a = single(node->input(0));
    const auto b = single(node->input(1));
    if (!a || !b) return std::nullopt;
    if (node->op_type() == "Add") return *a + *b;
    if (node->op_type() == "Sub") return *a - *b;
    if (node->op_type() == "Mul") return *a * *b;
    return std::nullopt;
  };
  const auto start = scalar(range.input(0));
  const auto limit = scalar(range.input(1));
  const auto delta = scalar(range.input(2));
  if (!start || !limit || !delta || *delta == 0) return std::nullopt;
  std::vector<int64_t> values;
  for (int64_t v = *start; *delta > 0 ? v < *limit : v > *limit; v += *delta) values.push_back(v);
  return values;
}

std::optional<Context::TypeInfo> Context::type_info(const std::string& tensor) const {
  if (auto it = value_infos_.find(tensor); it != value_infos_.end() && it->second->type().has_tensor_type()) {
    const auto& tt = it->second->type().tensor_type();
    TypeInfo info;
    info.elem_type = tt.elem_type();
    if (tt.has_shape()) {
      info.rank = tt.shape().dim_size();
      for (const auto& d : tt.shape().dim())
        info.dims.push_back(d.has_dim_value() ? std::optional<int64_t>(d.dim_value()) : std::nullopt);
    }
    return info;
  }
  if (const auto t = constant(tensor)) {
    TypeInfo info;
    info.elem_type = t->data_type();
    info.rank = t->dims_size();
    for (auto d : t->dims()) info.dims.emplace_back(d);
    return info;
  }
  return std::nullopt;
}

int32_t Context::elem_type(const std::string& tensor) const {
  // The exporter leaves out value_info for tensors inside its decompositions,
  // so the type is also followed back through ops whose result has the type
  // of an input.
  static const std::unordered_set<std::string> same_as_first{
      "Abs", "Add", "AveragePool", "BatchNormalization", "Ceil", "Celu", "Clip", "Compress", "Concat", "Conv",
      "ConvTranspose", "Cos", "CumSum", "DepthToSpace", "Div", "Dropout", "Elu", "Erf", "Exp", "Expand", "Flatten",
      "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool",
      "GlobalMaxPool", "GroupNormalization", "Hardmax", "HardSigmoid", "HardSwish", "Identity",
      "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax", "LpNormalization", "LpPool",
      "LRN", "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg",
      "Pad", "Pow", "PRelu", "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
      "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape",
      "Resize", "ReverseSequence", "Round", "ScatterElements", "ScatterND", "Selu", "SequenceAt", "Sigmoid", "Sign",
      "Sin", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "SplitToSequence", "Sqrt",
      "Squeeze", "Sub", "Sum", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze"};
  static const std::unordered_set<std::string> boolean{"And",  "Equal", "Greater", "GreaterOrEqual", "IsInf",
                                                       "IsNaN", "Less", "LessOrEqual", "Not", "Or", "Xor"};
  std::string name = tensor;
  for (int hops = 0; hops < 1024; ++hops) {
    if (const auto info = type_info(name); info && info->elem_type != 0) return info->elem_type;
    const onnx::NodeProto* node = producer(name);
    if (!node || !(node->domain().empty() || node->domain() == "ai.onnx") || node->input_size() == 0) return 0;
    const std::string& op = node->op_type();
    if (op == "Cast") return static_cast<int32_t>(get_int_attribute(*node, "to", 0));
    if (op == "Shape" || op == "Size") return onnx::TensorProto::INT64;
    if (boolean.count(op)) return onnx::TensorProto::BOOL;
    if (op == "CastLike" && node->input_size() > 1) {
      name = node->input(1);
    } else if (op == "Where" && node->input_size() > 1) {
      name = node->input(1);
    } else if (same_as_first.count(op) && name == node->output(0)) {
      name = node->input(0);
    } else if ((op == "Split" || op == "SplitToSequence") && !node->input(0).empty()) {
      name = node->input(0);
    } else {
      return 0;
    }
  }
  return 0;
}

int64_t Context::rank(const std::string& tensor) const {
  const auto info = type_info(tensor);
  return info ? info->rank : -1;
}

std::optional<int64_t> Context::dim(const std::string& tensor, int64_t axis) const {
  const auto info = type_info(tensor);
  if (!info || info->rank < 0) return std::nullopt;
  if (axis < 0) axis += info->rank;
  if (axis < 0 || axis >= info->rank) return std::nullopt;
  return info->dims[static_cast<size_t>(axis)];
}

std::string Context::fresh_tensor(const std::string& base) {
  std::string name = base;
  for (int i = 1; names_.tensors.count(name); ++i) name = base + "_" + std::to_string(i);
  names_.tensors.insert(name);
  return name;
}

std::string Context::fresh_node(const std::string& base) {
  std::string name = base;
  for (int i = 1; names_.nodes.count(name); ++i) name = base + "_" + std::to_string(i);
  names_.nodes.insert(name);
  return name;
}

std::string Context::add_initializer(const std::string& base, onnx::TensorProto tensor) {
  tensor.set_name(fresh_tensor(base));
  onnx::TensorProto* added = graph_.add_initializer();
  *added = std::move(tensor);
  initializers_[added->name()] = added;
  return added->name();
}

std::string Context::add_ints(const std::string& base, const std::vector<int64_t>& values) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::INT64);
  t.add_dims(static_cast<int64_t>(values.size()));
  for (int64_t v : values) t.add_int64_data(v);
  return add_initializer(base, std::move(t));
}

onnx::NodeProto Rewrite::make_node(const std::string& op, const std::string& suffix,
                                   const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(ctx.fresh_node(node.name() + "." + suffix));
  for (const auto& in : inputs) n.add_input(in);
  for (const auto& out : outputs) n.add_output(out);
  *n.mutable_metadata_props() = node.metadata_props();
  return n;
}

onnx::NodeProto& Rewrite::add_before(const std::string& op, const std::string& suffix,
                                     const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  before.push_back(make_node(op, suffix, inputs, outputs));
  return before.back();
}

onnx::NodeProto& Rewrite::add_after(const std::string& op, const std::string& suffix,
                                    const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  after.push_back(make_node(op, suffix, inputs, outputs));
  return after.back();
}

std::string Rewrite::fresh(const std::string& suffix) { return ctx.fresh_tensor(node.name() + "." + suffix); }

std::string Rewrite::scalar(const std::string& suffix, double value, int32_t elem_type) {
  onnx::TensorProto t;
  if (elem_type == onnx::TensorProto::DOUBLE) {
    t.set_data_type(onnx::TensorProto::DOUBLE);
    t.add_double_data(value);
    return ctx.add_initializer(node.name() + "." + suffix, std::move(t));
  }
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_float_data(static_cast<float>(value));
  const std::string as_float = ctx.add_initializer(node.name() + "." + suffix, std::move(t));
  if (elem_type == onnx::TensorProto::FLOAT) return as_float;
  if (elem_type != onnx::TensorProto::FLOAT16 && elem_type != onnx::TensorProto::BFLOAT16)
    fail("its input has element type " + std::to_string(elem_type) +
         " (expected a floating-point type known from value_info or a graph input)");
  // Half types: let the runtime round the float constant.
  const std::string cast = fresh(suffix + "_cast");
  set_int_attribute(add_before("Cast", suffix + "_cast", {as_float}, {cast}), "to", elem_type);
  return cast;
}

std::string Rewrite::input(int i) const { return i < node.input_size() ? node.input(i) : std::string(); }

void Rewrite::keep_inputs(int count) {
  for (int i = count; i < node.input_size(); ++i)
    if (!node.input(i).empty()) detached.push_back(node.input(i));
  while (node.input_size() > count) node.mutable_input()->RemoveLast();
  while (node.input_size() > 0 && node.input(node.input_size() - 1).empty()) node.mutable_input()->RemoveLast();
}

void Rewrite::set_input(int i, const std::string& tensor) {
  while (node.input_size() <= i) node.add_input("");
  if (!node.input(i).empty() && node.input(i) != tensor) detached.push_back(node.input(i));
  node.set_input(i, tensor);
}

void Rewrite::become(const std::string& op, const std::vector<std::string>& inputs,
                     const std::vector<std::string>& outputs) {
  std::unordered_set<std::string> still_read(inputs.begin(), inputs.end());
  for (const auto& n : before) still_read.insert(n.input().begin(), n.input().end());
  for (const auto& in : node.input())
    if (!in.empty() && !still_read.count(in)) detached.push_back(in);
  node.set_op_type(op);
  node.clear_attribute();
  node.clear_input();
  node.clear_output();
  for (const auto& in : inputs) node.add_input(in);
  for (const auto& out : outputs) node.add_output(out);
}

void Rewrite::drop_int_attribute(const std::string& name, int64_t fallback) {
  const int64_t value = get_int_attribute(node, name, fallback);
  if (value != fallback) needs_step("attribute " + name + "=" + std::to_string(value));
  remove_attribute(node, name);
}

void Rewrite::drop_string_attribute(const std::string& name, const std::string& fallback) {
  const std::string value = get_string_attribute(node, name, fallback);
  if (value != fallback) needs_step("attribute " + name + "='" + value + "'");
  remove_attribute(node, name);
}

std::string Rewrite::describe() const {
  std::string text = "node '" + node.name() + "' (op " + node.op_type();
  const std::string module = module_of(node);
  if (!module.empty()) text += ", module '" + module + "'";
  return text + ")";
}

void Rewrite::needs_step(const std::string& why) const {
  invalid("cannot convert " + describe() + " from opset " + std::to_string(ctx.source()) + " to opset " +
          std::to_string(ctx.target()) + ": " + why + " has no form below opset " + std::to_string(step) +
          "; the lowest opset that works is " + std::to_string(step));
}

void Rewrite::fail(const std::string& why) const {
  invalid("cannot convert " + describe() + " from opset " + std::to_string(ctx.source()) + " to opset " +
          std::to_string(ctx.target()) + ": " + why);
}

std::string module_of(const onnx::NodeProto& node) {
  // The dynamo exporter writes "<name>: <type>" scopes joined by '/': the root
  // (empty name), each module by its full path, and last the aten op itself.
  for (const auto& prop : node.metadata_props()) {
    if (prop.key() != "namespace") continue;
    std::vector<std::string> names;
    const std::string& text = prop.value();
    for (size_t start = 0; start <= text.size();) {
      size_t end = text.find('/', start);
      if (end == std::string::npos) end = text.size();
      const std::string scope = text.substr(start, end - start);
      names.push_back(scope.substr(0, scope.find(": ")));
      start = end + 1;
    }
    return names.size() >= 2 ? names[names.size() - 2] : std::string();
  }
  return "";
}

}  // namespace amct::opset
