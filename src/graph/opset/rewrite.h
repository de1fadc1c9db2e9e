// Internals of the opset converter (src/graph/opset): what an adapter sees of
// the graph (Context) and of the node it converts (Rewrite), the op table,
// and the adapters the table refers to.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "onnx/onnx.pb.h"

namespace amct::opset {

// Names already used anywhere in the model (all graphs share one scope, as
// ONNX forbids a subgraph to shadow an outer name).
struct UsedNames {
  std::unordered_set<std::string> tensors;
  std::unordered_set<std::string> nodes;
};

// Read-only facts about one graph as it was before the conversion, plus the
// means to add initializers and fresh names.
class Context {
 public:
  Context(onnx::GraphProto& graph, UsedNames& names, int64_t source, int64_t target);

  int64_t source() const { return source_; }
  int64_t target() const { return target_; }

  // The value of a constant tensor: an initializer or a Constant node (any of
  // its value attributes), also through Identity nodes.
  std::optional<onnx::TensorProto> constant(const std::string& tensor) const;
  // The integer values of a constant INT64/INT32 tensor.
  std::optional<std::vector<int64_t>> constant_ints(const std::string& tensor) const;
  // The ONNX element type known for `tensor`, 0 when unknown.
  int32_t elem_type(const std::string& tensor) const;
  // The rank known for `tensor`, -1 when unknown.
  int64_t rank(const std::string& tensor) const;
  // Dimension `axis` of `tensor` when it is a known number.
  std::optional<int64_t> dim(const std::string& tensor, int64_t axis) const;
  // The node of the original graph that produced `tensor`, or nullptr.
  const onnx::NodeProto* producer(const std::string& tensor) const;

  std::string fresh_tensor(const std::string& base);
  std::string fresh_node(const std::string& base);
  // Adds an initializer named after `base`; returns its name.
  std::string add_initializer(const std::string& base, onnx::TensorProto tensor);
  std::string add_ints(const std::string& base, const std::vector<int64_t>& values);

 private:
  struct TypeInfo {
    int32_t elem_type = 0;
    int64_t rank = -1;
    std::vector<std::optional<int64_t>> dims;
  };
  std::optional<TypeInfo> type_info(const std::string& tensor) const;
  std::optional<std::vector<int64_t>> constant_range(const onnx::NodeProto& range) const;

  onnx::GraphProto& graph_;
  UsedNames& names_;
  int64_t source_;
  int64_t target_;
  std::unordered_map<std::string, const onnx::NodeProto*> producers_;
  std::unordered_map<std::string, const onnx::TensorProto*> initializers_;
  std::unordered_map<std::string, const onnx::ValueInfoProto*> value_infos_;
};

// One node being converted. The node keeps its name (and so its outputs keep
// their producer's name); nodes an adapter adds go before or after it.
class Rewrite {
 public:
  Rewrite(Context& ctx, onnx::NodeProto node) : ctx(ctx), node(std::move(node)) {}

  Context& ctx;
  onnx::NodeProto node;
  std::vector<onnx::NodeProto> before;
  std::vector<onnx::NodeProto> after;
  // Tensors the node no longer reads; their producers may become dead.
  std::vector<std::string> detached;
  // The opset version of the change being applied: the lowest opset at which
  // the node's current form is valid when a down adapter gives up.
  int64_t step = 0;

  // Adds a node "<node name>.<suffix>" carrying the node's metadata.
  onnx::NodeProto& add_before(const std::string& op, const std::string& suffix, const std::vector<std::string>& inputs,
                              const std::vector<std::string>& outputs);
  onnx::NodeProto& add_after(const std::string& op, const std::string& suffix, const std::vector<std::string>& inputs,
                             const std::vector<std::string>& outputs);
  // A fresh tensor name "<node name>.<suffix>".
  std::string fresh(const std::string& suffix);
  // A scalar constant of element type `elem_type` (a float type), as a tensor name.
  std::string scalar(const std::string& suffix, double value, int32_t elem_type);

  // Input `i`, or "" when the node has fewer inputs or leaves it empty.
  std::string input(int i) const;
  // Keeps the first `count` inputs and drops trailing empty ones.
  void keep_inputs(int count);
  // Sets input `i`, padding with empty inputs.
  void set_input(int i, const std::string& tensor);

  // Turns the node into `op` with these inputs and outputs and no attributes,
  // keeping its name and metadata (the last node of a decomposition).
  void become(const std::string& op, const std::vector<std::string>& inputs, const std::vector<std::string>& outputs);

  // Removes an INT attribute when it holds its default; otherwise the node
  // needs opset `step`.
  void drop_int_attribute(const std::string& name, int64_t fallback);
  void drop_string_attribute(const std::string& name, const std::string& fallback);

  // "node 'n' (op X, module 'm')".
  std::string describe() const;
  // The node has no form below opset `step`.
  [[noreturn]] void needs_step(const std::string& why) const;
  // The node cannot be converted for another reason.
  [[noreturn]] void fail(const std::string& why) const;

 private:
  onnx::NodeProto make_node(const std::string& op, const std::string& suffix, const std::vector<std::string>& inputs,
                            const std::vector<std::string>& outputs);
};

// Converts the node from its form at opset `Change::version` to the form
// below it (down) or the other way (up). A null down adapter means the op has
// no form below that version; a null up adapter means the older form is valid
// as it is.
using Adapter = void (*)(Rewrite&);

struct Change {
  int64_t version;
  Adapter down;
  Adapter up;
};

struct OpRule {
  std::string_view op;
  // The first opset that has the op.
  int64_t since;
  // Versions at which the op's meaning or signature changed (not those that
  // only added types), ascending.
  std::vector<Change> changes;
};

// The tensor a Constant node holds, whichever value attribute it uses.
std::optional<onnx::TensorProto> constant_node_value(const onnx::NodeProto& node);

// The rule for a default-domain op, nullptr when the converter does not know it.
const OpRule* find_rule(std::string_view op);

// The torch module path recorded by the dynamo exporter ("" when none).
std::string module_of(const onnx::NodeProto& node);

// Adapters (axes_adapters.cc, decompositions.cc, attribute_adapters.cc).
void reduce_axes_to_attribute(Rewrite& r);
void reduce_axes_to_input(Rewrite& r);
void squeeze_axes_to_attribute(Rewrite& r);
void squeeze_axes_to_input(Rewrite& r);
void split_to_attribute(Rewrite& r);
void split_to_input(Rewrite& r);
void split_drop_num_outputs(Rewrite& r);
void split_add_num_outputs(Rewrite& r);
void softmax_to_coerced(Rewrite& r);
void softmax_to_axis(Rewrite& r);

void decompose_layer_normalization(Rewrite& r);
void decompose_gelu(Rewrite& r);
void decompose_hard_swish(Rewrite& r);
void decompose_mish(Rewrite& r);
void decompose_greater_or_equal(Rewrite& r);
void decompose_less_or_equal(Rewrite& r);
void integer_min_max_through_double(Rewrite& r);
void cast_like_to_cast(Rewrite& r);
void shape_slice_to_slice(Rewrite& r);

void constant_to_value_tensor(Rewrite& r);
void dropout_to_attribute(Rewrite& r);
void dropout_to_input(Rewrite& r);
void resize_fill_roi_scales(Rewrite& r);
void resize_reject_tf_half_pixel(Rewrite& r);
void resize_drop_18_attributes(Rewrite& r);
void resize_reject_symmetric(Rewrite& r);
void pad_drop_axes(Rewrite& r);
void pad_reject_wrap(Rewrite& r);
void reshape_drop_allowzero(Rewrite& r);
void batch_norm_drop_training_mode(Rewrite& r);
void batch_norm_reject_training_outputs(Rewrite& r);
void quantize_per_tensor_only(Rewrite& r);
void quantize_drop_21_attributes(Rewrite& r);
void scatter_drop_reduction(Rewrite& r);
void scatter_reject_min_max(Rewrite& r);
void roi_align_drop_mode(Rewrite& r);
void roi_align_set_mode(Rewrite& r);
void grid_sample_to_bi_modes(Rewrite& r);
void grid_sample_to_n_modes(Rewrite& r);
void pool_drop_dilations(Rewrite& r);
void lp_pool_drop_18_attributes(Rewrite& r);
void drop_select_last_index(Rewrite& r);
void drop_batch_dims(Rewrite& r);
void drop_layout(Rewrite& r);
void drop_saturate(Rewrite& r);
// For a change whose older form has no equivalent at the newer opset.
void reject_up(Rewrite& r);

}  // namespace amct::opset
