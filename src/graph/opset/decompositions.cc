// Ops introduced after opset 11 that have an exact expression in older ops:
// LayerNormalization, Gelu, HardSwish, Mish, GreaterOrEqual/LessOrEqual,
// CastLike, Shape with start/end, and Max/Min on integers. The node that writes the original
// output keeps the original name.
#include <cmath>
#include <limits>

#include "amct/onnx_graph.h"
#include "rewrite.h"

namespace amct::opset {

namespace {

// The element type of input `index`, needed to build constants of that type.
int32_t known_elem_type(Rewrite& r, int index) {
  const int32_t type = r.ctx.elem_type(r.input(index));
  if (type == 0)
    r.fail("the element type of input '" + r.input(index) +
           "' is unknown (no value_info, graph input or initializer gives it)");
  return type;
}

// A ReduceMean over `axes` with kept dimensions, in the target's form.
void add_reduce_mean(Rewrite& r, const std::string& suffix, const std::string& in, const std::string& out,
                     const std::vector<int64_t>& axes) {
  if (r.ctx.target() >= 18) {
    const std::string axes_tensor = r.ctx.add_ints(r.node.name() + "." + suffix + "_axes", axes);
    set_int_attribute(r.add_before("ReduceMean", suffix, {in, axes_tensor}, {out}), "keepdims", 1);
    return;
  }
  auto& node = r.add_before("ReduceMean", suffix, {in}, {out});
  set_ints_attribute(node, "axes", axes);
  set_int_attribute(node, "keepdims", 1);
}

std::string add_binary(Rewrite& r, const std::string& op, const std::string& suffix, const std::string& a,
                       const std::string& b) {
  const std::string out = r.fresh(suffix);
  r.add_before(op, suffix, {a, b}, {out});
  return out;
}

std::string add_unary(Rewrite& r, const std::string& op, const std::string& suffix, const std::string& a) {
  const std::string out = r.fresh(suffix);
  r.add_before(op, suffix, {a}, {out});
  return out;
}

std::string add_cast(Rewrite& r, const std::string& suffix, const std::string& a, int32_t to) {
  const std::string out = r.fresh(suffix);
  set_int_attribute(r.add_before("Cast", suffix, {a}, {out}), "to", to);
  return out;
}

}  // namespace

void decompose_layer_normalization(Rewrite& r) {
  const std::string x = r.input(0);
  const std::string scale = r.input(1);
  const std::string bias = r.input(2);
  const int32_t type = known_elem_type(r, 0);
  const int64_t axis = get_int_attribute(r.node, "axis", -1);
  const float epsilon = get_float_attribute(r.node, "epsilon", 1e-5f);
  // The statistics are computed in stash_type (float by default), as the op defines.
  const int32_t stash = static_cast<int32_t>(get_int_attribute(r.node, "stash_type", onnx::TensorProto::FLOAT));

  std::vector<int64_t> axes;
  if (axis < 0) {
    for (int64_t a = axis; a < 0; ++a) axes.push_back(a);
  } else {
    const int64_t rank = r.ctx.rank(x);
    if (rank < 0)
      r.needs_step("axis=" + std::to_string(axis) + " over input '" + x +
                   "' of unknown rank (no value_info or graph input shape)");
    for (int64_t a = axis; a < rank; ++a) axes.push_back(a);
  }

  const std::string y = r.node.output(0);
  const std::string mean_out = r.node.output_size() > 1 ? r.node.output(1) : "";
  const std::string inv_std_out = r.node.output_size() > 2 ? r.node.output(2) : "";

  const std::string xs = stash == type ? x : add_cast(r, "to_stash", x, stash);
  const std::string mean = mean_out.empty() ? r.fresh("mean") : mean_out;
  add_reduce_mean(r, "mean", xs, mean, axes);
  const std::string centered = add_binary(r, "Sub", "centered", xs, mean);
  // Pow(., 2) rather than Mul(., .): the form ONNX Runtime's LayerNormFusion
  // recognises, so the decomposed op runs as one fused kernel again.
  const std::string squared = add_binary(r, "Pow", "squared", centered, r.scalar("two", 2.0, stash));
  const std::string variance = r.fresh("variance");
  add_reduce_mean(r, "variance", squared, variance, axes);
  const std::string shifted = add_binary(r, "Add", "add_epsilon", variance, r.scalar("epsilon", epsilon, stash));
  const std::string std_dev = add_unary(r, "Sqrt", "std", shifted);
  if (!inv_std_out.empty()) r.add_before("Reciprocal", "inv_std", {std_dev}, {inv_std_out});
  std::string normalized = add_binary(r, "Div", "normalized", centered, std_dev);
  if (stash != type) normalized = add_cast(r, "from_stash", normalized, type);
  if (bias.empty()) {
    r.become("Mul", {normalized, scale}, {y});
    return;
  }
  const std::string scaled = add_binary(r, "Mul", "scaled", normalized, scale);
  r.become("Add", {scaled, bias}, {y});
}

void decompose_gelu(Rewrite& r) {
  const std::string x = r.input(0);
  const int32_t type = known_elem_type(r, 0);
  const std::string approximate = get_string_attribute(r.node, "approximate", "none");
  std::string inner;
  if (approximate == "tanh") {
    // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
    const std::string square = add_binary(r, "Mul", "square", x, x);
    const std::string cube = add_binary(r, "Mul", "cube", square, x);
    const std::string scaled_cube = add_binary(r, "Mul", "scaled_cube", cube, r.scalar("coefficient", 0.044715, type));
    const std::string sum = add_binary(r, "Add", "sum", x, scaled_cube);
    const std::string argument =
        add_binary(r, "Mul", "argument", sum, r.scalar("sqrt_2_over_pi", std::sqrt(2.0 / M_PI), type));
    inner = add_unary(r, "Tanh", "tanh", argument);
  } else if (approximate == "none") {
    // (x * (1 + erf(x / sqrt(2)))) * 0.5, in the order ONNX Runtime's
    // GeluFusion recognises, so the decomposed op runs as one kernel again.
    const std::string argument = add_binary(r, "Div", "argument", x, r.scalar("sqrt_2", M_SQRT2, type));
    const std::string erf = add_unary(r, "Erf", "erf", argument);
    const std::string one_plus = add_binary(r, "Add", "one_plus", erf, r.scalar("one", 1.0, type));
    const std::string product = add_binary(r, "Mul", "x_times", x, one_plus);
    r.become("Mul", {product, r.scalar("half", 0.5, type)}, {r.node.output(0)});
    return;
  } else {
    r.fail("attribute approximate='" + approximate + "' is neither 'none' nor 'tanh'");
  }
  const std::string one_plus = add_binary(r, "Add", "one_plus", inner, r.scalar("one", 1.0, type));
  const std::string half_x = add_binary(r, "Mul", "half_x", x, r.scalar("half", 0.5, type));
  r.become("Mul", {half_x, one_plus}, {r.node.output(0)});
}

void decompose_hard_swish(Rewrite& r) {
  // HardSwish(x) = x * HardSigmoid(x) with alpha 1/6 and beta 0.5.
  const std::string x = r.input(0);
  const std::string gate = r.fresh("hard_sigmoid");
  auto& sigmoid = r.add_before("HardSigmoid", "hard_sigmoid", {x}, {gate});
  set_float_attribute(sigmoid, "alpha", 1.0f / 6.0f);
  set_float_attribute(sigmoid, "beta", 0.5f);
  r.become("Mul", {x, gate}, {r.node.output(0)});
}

void decompose_mish(Rewrite& r) {
  // Mish(x) = x * tanh(softplus(x)).
  const std::string x = r.input(0);
  const std::string gate = add_unary(r, "Tanh", "tanh", add_unary(r, "Softplus", "softplus", x));
  r.become("Mul", {x, gate}, {r.node.output(0)});
}

void decompose_greater_or_equal(Rewrite& r) {
  const std::string less = add_binary(r, "Less", "less", r.input(0), r.input(1));
  r.become("Not", {less}, {r.node.output(0)});
}

void decompose_less_or_equal(Rewrite& r) {
  const std::string greater = add_binary(r, "Greater", "greater", r.input(0), r.input(1));
  r.become("Not", {greater}, {r.node.output(0)});
}

// Before opset 12 Max and Min take floating-point tensors only. Integer
// operands go through DOUBLE and back, which is exact for |v| <= 2^53 (shape
// arithmetic, where the exporter emits these, stays far below that).
void integer_min_max_through_double(Rewrite& r) {
  int32_t type = r.ctx.elem_type(r.node.output(0));
  for (int i = 0; type == 0 && i < r.node.input_size(); ++i) type = r.ctx.elem_type(r.input(i));
  // Unknown types are taken for float, the only kind older Max/Min accept.
  if (type == 0 || type == onnx::TensorProto::FLOAT || type == onnx::TensorProto::DOUBLE ||
      type == onnx::TensorProto::FLOAT16)
    return;
  if (type == onnx::TensorProto::UINT64 || type == onnx::TensorProto::BFLOAT16)
    r.needs_step("operands of element type " + onnx::TensorProto::DataType_Name(type) + " (no exact DOUBLE form)");
  std::vector<std::string> as_double;
  for (int i = 0; i < r.node.input_size(); ++i)
    as_double.push_back(r.input(i).empty() ? "" : add_cast(r, "input" + std::to_string(i) + "_double", r.input(i),
                                                          onnx::TensorProto::DOUBLE));
  const std::string op = r.node.op_type();
  const std::string result = r.fresh("double");
  r.add_before(op, "double_" + op, as_double, {result});
  r.become("Cast", {result}, {r.node.output(0)});
  set_int_attribute(r.node, "to", type);
}

void cast_like_to_cast(Rewrite& r) {
  const int32_t to = r.ctx.elem_type(r.input(1));
  if (to == 0)
    r.needs_step("target_type '" + r.input(1) + "' of unknown element type (no initializer, Constant, " +
                 "value_info or graph input gives it)");
  r.become("Cast", {r.input(0)}, {r.node.output(0)});
  set_int_attribute(r.node, "to", to);
}

void shape_slice_to_slice(Rewrite& r) {
  const bool has_end = find_attribute(r.node, "end") != nullptr;
  const int64_t start = get_int_attribute(r.node, "start", 0);
  const int64_t end = get_int_attribute(r.node, "end", std::numeric_limits<int64_t>::max());
  remove_attribute(r.node, "start");
  remove_attribute(r.node, "end");
  if (start == 0 && !has_end) return;
  // Shape(x)[start:end] as a Slice of the whole shape.
  const std::string full = r.fresh("full");
  const std::string output = r.node.output(0);
  r.node.set_output(0, full);
  const std::string starts = r.ctx.add_ints(r.node.name() + ".starts", {start});
  const std::string ends = r.ctx.add_ints(r.node.name() + ".ends", {end});
  const std::string axes = r.ctx.add_ints(r.node.name() + ".axes", {0});
  r.add_after("Slice", "slice", {full, starts, ends, axes}, {output});
}

}  // namespace amct::opset
