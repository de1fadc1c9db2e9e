// Adapters for the ops whose axes moved between an attribute and an input
// (Reduce*, Squeeze/Unsqueeze, Split) and for the softmax family, whose axis
// changed meaning at opset 13.
#include <numeric>

#include "amct/onnx_graph.h"
#include "rewrite.h"

namespace amct::opset {

namespace {

// Moves the INTS attribute `name` to a constant input at `index`.
void attribute_to_input(Rewrite& r, const std::string& name, int index) {
  if (!find_attribute(r.node, name)) return;
  const std::vector<int64_t> values = get_ints_attribute(r.node, name);
  remove_attribute(r.node, name);
  r.set_input(index, r.ctx.add_ints(r.node.name() + "." + name, values));
}

// The constant values of input `index`, or the node needs opset `step`.
std::vector<int64_t> constant_input(Rewrite& r, int index, const std::string& what) {
  const auto values = r.ctx.constant_ints(r.input(index));
  if (!values) r.needs_step(what + " computed at run time (input '" + r.input(index) + "')");
  return *values;
}

}  // namespace

void reduce_axes_to_attribute(Rewrite& r) {
  const bool noop_when_empty = get_int_attribute(r.node, "noop_with_empty_axes", 0) != 0;
  remove_attribute(r.node, "noop_with_empty_axes");
  std::vector<int64_t> axes;
  if (!r.input(1).empty()) axes = constant_input(r, 1, "axes");
  r.keep_inputs(1);
  if (!axes.empty()) {
    set_ints_attribute(r.node, "axes", axes);
  } else if (noop_when_empty) {
    // No axes and noop_with_empty_axes: the reduction passes its input through.
    r.node.set_op_type("Identity");
    r.node.clear_attribute();
  }
  // Otherwise no axes means all axes, in both forms.
}

void reduce_axes_to_input(Rewrite& r) { attribute_to_input(r, "axes", 1); }

void squeeze_axes_to_attribute(Rewrite& r) {
  if (r.input(1).empty()) return;
  const std::vector<int64_t> axes = constant_input(r, 1, "axes");
  r.keep_inputs(1);
  set_ints_attribute(r.node, "axes", axes);
}

void squeeze_axes_to_input(Rewrite& r) { attribute_to_input(r, "axes", 1); }

void split_to_attribute(Rewrite& r) {
  if (r.input(1).empty()) return;
  const std::vector<int64_t> split = constant_input(r, 1, "split sizes");
  r.keep_inputs(1);
  set_ints_attribute(r.node, "split", split);
}

void split_to_input(Rewrite& r) { attribute_to_input(r, "split", 1); }

void split_drop_num_outputs(Rewrite& r) {
  if (!find_attribute(r.node, "num_outputs")) return;
  const int64_t parts = get_int_attribute(r.node, "num_outputs", 0);
  remove_attribute(r.node, "num_outputs");
  if (!r.input(1).empty() || parts <= 0) return;
  // Below 18 a Split without sizes splits evenly; num_outputs makes the last
  // part smaller when the axis does not divide. Where the axis length is
  // known, uneven parts are spelt out; where it is not, an uneven split
  // fails at run time instead of producing other values.
  const auto length = r.ctx.dim(r.input(0), get_int_attribute(r.node, "axis", 0));
  if (!length || *length % parts == 0) return;
  const int64_t chunk = (*length + parts - 1) / parts;
  const int64_t last = *length - chunk * (parts - 1);
  if (last <= 0)
    r.fail("num_outputs=" + std::to_string(parts) + " does not fit an axis of length " + std::to_string(*length));
  std::vector<int64_t> sizes(static_cast<size_t>(parts - 1), chunk);
  sizes.push_back(last);
  r.set_input(1, r.ctx.add_ints(r.node.name() + ".split", sizes));
}

void split_add_num_outputs(Rewrite& r) {
  // Opset 18 needs either the sizes or num_outputs; the older even split is num_outputs.
  if (!r.input(1).empty() || find_attribute(r.node, "num_outputs")) return;
  set_int_attribute(r.node, "num_outputs", r.node.output_size());
}

void softmax_to_coerced(Rewrite& r) {
  // Below 13 the input is flattened to 2-D at `axis` and rows are normalized,
  // which is the same thing only for the last axis.
  const int64_t axis = get_int_attribute(r.node, "axis", -1);
  const int64_t rank = r.ctx.rank(r.input(0));
  set_int_attribute(r.node, "axis", -1);
  if (axis == -1 || (rank > 0 && axis == rank - 1)) return;
  if (rank <= 0)
    r.needs_step("axis=" + std::to_string(axis) + " over input '" + r.input(0) +
                 "' of unknown rank (no value_info or graph input shape)");
  const int64_t normalized = axis < 0 ? axis + rank : axis;
  if (normalized < 0 || normalized >= rank)
    r.fail("axis=" + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  // Swap the axis with the last one, normalize, swap back.
  std::vector<int64_t> perm(static_cast<size_t>(rank));
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[static_cast<size_t>(normalized)], perm.back());
  const std::string moved = r.fresh("transposed");
  set_ints_attribute(r.add_before("Transpose", "transpose_in", {r.input(0)}, {moved}), "perm", perm);
  r.node.set_input(0, moved);
  const std::string result = r.fresh("result");
  const std::string output = r.node.output(0);
  r.node.set_output(0, result);
  set_ints_attribute(r.add_after("Transpose", "transpose_out", {result}, {output}), "perm", perm);
}

void softmax_to_axis(Rewrite& r) {
  const int64_t axis = get_int_attribute(r.node, "axis", 1);
  const int64_t rank = r.ctx.rank(r.input(0));
  set_int_attribute(r.node, "axis", axis);
  if (axis == -1 || (rank > 0 && axis == rank - 1)) return;
  // The old meaning, rank-free: flatten at `axis`, normalize rows, restore the shape.
  const std::string x = r.input(0);
  const std::string shape = r.fresh("shape");
  r.add_before("Shape", "shape", {x}, {shape});
  const std::string flat = r.fresh("flat");
  set_int_attribute(r.add_before("Flatten", "flatten", {x}, {flat}), "axis", axis);
  r.node.set_input(0, flat);
  set_int_attribute(r.node, "axis", 1);
  const std::string rows = r.fresh("rows");
  const std::string output = r.node.output(0);
  r.node.set_output(0, rows);
  auto& reshape = r.add_after("Reshape", "reshape", {rows, shape}, {output});
  // A 0 in the shape of an empty input is a real 0, not "copy this dimension".
  if (r.ctx.target() >= 14) set_int_attribute(reshape, "allowzero", 1);
}

}  // namespace amct::opset
