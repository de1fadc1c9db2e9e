// Adapters for ops that gained an attribute or input with a default that
// keeps the old meaning (dropped when it holds that default, refused
// otherwise), and for the few whose inputs or attributes changed form.
#include <algorithm>
#include <unordered_set>

#include "amct/onnx_graph.h"
#include "rewrite.h"

namespace amct::opset {

namespace {

bool all_ones(const std::vector<int64_t>& values) {
  return std::all_of(values.begin(), values.end(), [](int64_t v) { return v == 1; });
}

void drop_unit_dilations(Rewrite& r) {
  if (!all_ones(get_ints_attribute(r.node, "dilations"))) r.needs_step("attribute dilations other than 1");
  remove_attribute(r.node, "dilations");
}

// Whether a constant BOOL (or integer) tensor holds a single false.
bool is_constant_false(const onnx::TensorProto& t) {
  if (tensor_numel(t) != 1) return false;
  if (t.has_raw_data()) return !t.raw_data().empty() && t.raw_data()[0] == 0;
  if (t.int32_data_size() == 1) return t.int32_data(0) == 0;
  return t.int64_data_size() == 1 && t.int64_data(0) == 0;
}

std::string empty_float_input(Rewrite& r, const std::string& suffix) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_dims(0);
  return r.ctx.add_initializer(r.node.name() + "." + suffix, std::move(t));
}

// Whether no entry of the shape tensor can be a literal 0. Constants are
// checked; entries read from Shape are run-time dimensions, which are 0 only
// for an empty tensor, where "copy this dimension" and "0" agree on the
// element count, and so are their products with non-zero constants (dynamic
// batch sizes are exported as such). Anything computed otherwise is not trusted.
bool shape_has_no_zero(const Context& ctx, const std::string& shape) {
  std::vector<std::string> pending{shape};
  std::unordered_set<std::string> seen;
  while (!pending.empty()) {
    const std::string tensor = pending.back();
    pending.pop_back();
    if (!seen.insert(tensor).second) continue;
    if (const auto values = ctx.constant_ints(tensor)) {
      if (std::find(values->begin(), values->end(), 0) != values->end()) return false;
      continue;
    }
    const onnx::NodeProto* producer = ctx.producer(tensor);
    if (!producer) return false;
    const std::string& op = producer->op_type();
    if (op == "Shape") continue;
    if (op == "Concat" || op == "Mul") {
      pending.insert(pending.end(), producer->input().begin(), producer->input().end());
    } else if (op == "Gather" || op == "Slice" || op == "Squeeze" || op == "Unsqueeze" || op == "Identity" ||
               op == "Cast" || op == "Reshape") {
      pending.push_back(producer->input(0));
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

void constant_to_value_tensor(Rewrite& r) {
  if (find_attribute(r.node, "value") || find_attribute(r.node, "sparse_value")) return;
  const auto tensor = constant_node_value(r.node);
  if (!tensor) return;
  r.node.clear_attribute();
  auto* attr = r.node.add_attribute();
  attr->set_name("value");
  attr->set_type(onnx::AttributeProto::TENSOR);
  *attr->mutable_t() = *tensor;
}

void dropout_to_attribute(Rewrite& r) {
  if (!r.input(2).empty()) {
    const auto mode = r.ctx.constant(r.input(2));
    if (!mode || !is_constant_false(*mode)) r.needs_step("training_mode that is not a constant false");
  }
  if (!r.input(1).empty()) {
    const auto ratio = r.ctx.constant(r.input(1));
    if (!ratio || tensor_numel(*ratio) != 1) r.needs_step("ratio computed at run time");
    set_float_attribute(r.node, "ratio", tensor_to_floats(*ratio)[0]);
  }
  // The seed only matters in training, which opset 10's Dropout does not do.
  remove_attribute(r.node, "seed");
  r.keep_inputs(1);
}

void dropout_to_input(Rewrite& r) {
  if (!find_attribute(r.node, "ratio")) return;
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_float_data(get_float_attribute(r.node, "ratio", 0.5f));
  remove_attribute(r.node, "ratio");
  r.set_input(1, r.ctx.add_initializer(r.node.name() + ".ratio", std::move(t)));
}

void resize_fill_roi_scales(Rewrite& r) {
  // Opset 11 has roi and scales as required inputs; empty tensors mean "unused".
  if (r.input(1).empty()) r.set_input(1, empty_float_input(r, "roi"));
  if (r.input(2).empty()) r.set_input(2, empty_float_input(r, "scales"));
}

void resize_reject_tf_half_pixel(Rewrite& r) {
  if (get_string_attribute(r.node, "coordinate_transformation_mode", "") == "tf_half_pixel_for_nearest")
    r.fail("coordinate_transformation_mode 'tf_half_pixel_for_nearest' has no equivalent from opset 13 on");
}

void resize_drop_18_attributes(Rewrite& r) {
  r.drop_int_attribute("antialias", 0);
  r.drop_string_attribute("keep_aspect_ratio_policy", "stretch");
  if (find_attribute(r.node, "axes")) r.needs_step("attribute axes");
}

void resize_reject_symmetric(Rewrite& r) {
  if (get_string_attribute(r.node, "coordinate_transformation_mode", "") == "half_pixel_symmetric")
    r.needs_step("coordinate_transformation_mode 'half_pixel_symmetric'");
}

void pad_drop_axes(Rewrite& r) {
  if (r.input(3).empty()) return;
  // Spell the pads out for every axis.
  const auto axes = r.ctx.constant_ints(r.input(3));
  const auto pads = r.ctx.constant_ints(r.input(1));
  const int64_t rank = r.ctx.rank(r.input(0));
  if (!axes || !pads || rank < 0 || pads->size() != 2 * axes->size())
    r.needs_step("input axes (needs constant axes and pads and a known input rank)");
  std::vector<int64_t> full(static_cast<size_t>(2 * rank), 0);
  for (size_t i = 0; i < axes->size(); ++i) {
    const int64_t axis = (*axes)[i] < 0 ? (*axes)[i] + rank : (*axes)[i];
    if (axis < 0 || axis >= rank) r.fail("axis " + std::to_string((*axes)[i]) + " is out of range");
    full[static_cast<size_t>(axis)] = (*pads)[i];
    full[static_cast<size_t>(axis + rank)] = (*pads)[i + axes->size()];
  }
  r.set_input(1, r.ctx.add_ints(r.node.name() + ".pads", full));
  r.keep_inputs(3);
}

void pad_reject_wrap(Rewrite& r) {
  if (get_string_attribute(r.node, "mode", "constant") == "wrap") r.needs_step("mode 'wrap'");
}

void reshape_drop_allowzero(Rewrite& r) {
  if (get_int_attribute(r.node, "allowzero", 0) != 0 && !shape_has_no_zero(r.ctx, r.input(1)))
    r.needs_step("allowzero=1 with a shape that may hold 0 (input '" + r.input(1) + "')");
  remove_attribute(r.node, "allowzero");
}

void batch_norm_drop_training_mode(Rewrite& r) { r.drop_int_attribute("training_mode", 0); }

void batch_norm_reject_training_outputs(Rewrite& r) {
  for (int i = 1; i < r.node.output_size(); ++i)
    if (!r.node.output(i).empty())
      r.fail("it writes the training outputs (mean, var, saved_mean, saved_var), which opset 14 defines differently");
}

void quantize_per_tensor_only(Rewrite& r) {
  // Below 13 the scale is a scalar: one scale for the whole tensor.
  if (r.ctx.rank(r.input(1)) != 0) r.needs_step("a scale that is not a scalar (per-axis quantization)");
  remove_attribute(r.node, "axis");
}

void quantize_drop_21_attributes(Rewrite& r) {
  r.drop_int_attribute("block_size", 0);
  r.drop_int_attribute("output_dtype", 0);
}

void scatter_drop_reduction(Rewrite& r) { r.drop_string_attribute("reduction", "none"); }

void scatter_reject_min_max(Rewrite& r) {
  const std::string reduction = get_string_attribute(r.node, "reduction", "none");
  if (reduction == "min" || reduction == "max") r.needs_step("reduction '" + reduction + "'");
}

void roi_align_drop_mode(Rewrite& r) {
  // Opset 10 always behaves as output_half_pixel; 16 defaults to half_pixel.
  const std::string mode = get_string_attribute(r.node, "coordinate_transformation_mode", "half_pixel");
  if (mode != "output_half_pixel") r.needs_step("coordinate_transformation_mode '" + mode + "'");
  remove_attribute(r.node, "coordinate_transformation_mode");
}

void roi_align_set_mode(Rewrite& r) {
  set_string_attribute(r.node, "coordinate_transformation_mode", "output_half_pixel");
}

void grid_sample_to_bi_modes(Rewrite& r) {
  const int64_t rank = r.ctx.rank(r.input(0));
  if (rank != 4)
    r.needs_step("a grid sample over an input of rank " + (rank < 0 ? std::string("unknown") : std::to_string(rank)) +
                 " (opset 16 has 4-D only)");
  const std::string mode = get_string_attribute(r.node, "mode", "linear");
  set_string_attribute(r.node, "mode", mode == "linear" ? "bilinear" : mode == "cubic" ? "bicubic" : mode);
}

void grid_sample_to_n_modes(Rewrite& r) {
  const std::string mode = get_string_attribute(r.node, "mode", "bilinear");
  set_string_attribute(r.node, "mode", mode == "bilinear" ? "linear" : mode == "bicubic" ? "cubic" : mode);
}

void pool_drop_dilations(Rewrite& r) { drop_unit_dilations(r); }

void lp_pool_drop_18_attributes(Rewrite& r) {
  r.drop_int_attribute("ceil_mode", 0);
  drop_unit_dilations(r);
}

void drop_select_last_index(Rewrite& r) { r.drop_int_attribute("select_last_index", 0); }
void drop_batch_dims(Rewrite& r) { r.drop_int_attribute("batch_dims", 0); }
void drop_layout(Rewrite& r) { r.drop_int_attribute("layout", 0); }
// saturate only affects casts to float8 types, which do not exist below opset 19.
void drop_saturate(Rewrite& r) { remove_attribute(r.node, "saturate"); }

void reject_up(Rewrite& r) {
  r.fail("its meaning changed at opset " + std::to_string(r.step) + " and the converter has no rewrite for it");
}

}  // namespace amct::opset
