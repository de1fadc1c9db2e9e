// QdqOutput: what happens to the float result of each quantized layer.
//
// ONNX Runtime fuses DequantizeLinear -> Conv/Gemm -> QuantizeLinear into
// QLinearConv / QGemm only when the layer's output is requantized, and the
// record holds input factors only. So:
//  1. every use of the result reaches quantized layers with one common
//     (scale_d, offset_d) through ops that commute with quantization (Relu,
//     MaxPool, Clip and Pad with constant operands, reshaping; see
//     qdq_commutes_with_quantization), or in the full-INT8 model a tensor
//     that qdq_tensor_pass quantizes with those factors for its other uses:
//     the result is requantized with those factors,
//     QuantizeLinear "<L>.output_quant" + DequantizeLinear "<L>.output_dequant".
//     The consumer would quantize the same values with the same factors, so
//     this adds no error (Relu(x) quantized == max(quantized x, zero point)).
//  2. Gemm / MatMul otherwise: nothing; ONNX Runtime runs QGemm with a float
//     output, exactly AMCT's dequantized result.
//  3. AveragePool otherwise: requantized with its own input factors; an
//     average stays inside the input range, so the only change is rounding
//     to that grid (at most half a step).
//  4. Conv otherwise (e.g. into a residual Add or a graph output): an output
//     scale would have to be invented, so the layer becomes the integer form
//     of AMCT's deploy model: ConvInteger (UINT8 x UINT8 weight with zero
//     point 128, the fast MLAS path) -> Add "<L>.bias_add" of the INT32 bias
//     -> Cast "<L>.accumulator_cast" -> Mul "<L>.dequant" by
//     float32(scale_w * scale_d). The integers and the dequantization are
//     those of the fake-quant model.
// In the full-INT8 model (plan.tensor_ranges) a result that qdq_tensor_pass
// quantizes, itself or after its Relu / Clip, stays as it is for that pass.
// A ConvTranspose that QdqDeconvToConv could not regroup has no integer
// kernel in ONNX Runtime and keeps a float result.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// An initializer or Constant output (any of its value attributes).
bool is_constant(const GraphIndex& index, const std::string& tensor) {
  const std::string name = qdq_uncast(index, tensor);
  if (index.initializer(name)) return true;
  const onnx::NodeProto* producer = index.producer(name);
  return producer && producer->op_type() == "Constant";
}

// Every input after the data one is absent or a constant.
bool constant_operands(const GraphIndex& index, const onnx::NodeProto& node) {
  for (int i = 1; i < node.input_size(); ++i)
    if (!node.input(i).empty() && !is_constant(index, node.input(i))) return false;
  return true;
}

// A use that reads only the type or shape of `tensor`, which requantizing
// keeps: CastLike's target type input, Shape, Size.
bool reads_no_values(const onnx::NodeProto& node, const std::string& tensor) {
  if (node.op_type() == "Shape" || node.op_type() == "Size") return true;
  return node.op_type() == "CastLike" && node.input(0) != tensor;
}

// Pad only moves data when the fill is a copy of the input (edge, reflect,
// wrap) or 0, which is always on the grid: it dequantizes from the zero
// point, an integer.
bool pads_with_grid_values(const GraphIndex& index, const onnx::NodeProto& node) {
  if (!constant_operands(index, node)) return false;
  return get_string_attribute(node, "mode", "constant") != "constant" || qdq_fills_with_zero(index, node);
}

// Ops y = f(x) with quantize(f(x)) == f(quantize(x)) for the same factors:
// monotone and value-preserving, or pure data movement.
// Clip with constant bounds is a monotone clamp, and adds no error even
// with bounds off the grid. With q(v) = clamp(round(v / s) + z, 0, 255),
// n = q(x) and x' = s * (n - z) the requantized value, the consumer gets
// q(clip(x', lo, hi)) instead of q(clip(x, lo, hi)). If x' is inside the
// bounds it is on the grid, q(x') = n, and x is inside too or past the
// bound x' rounds towards, where q(bound) = n as well. If x' is past a
// bound, say hi, it becomes hi: x >= hi gives q(hi) both ways; x < hi
// gives n = q(x) <= q(hi) by monotony and q(hi) <= n because the integer
// n - z exceeds hi / s. So the change is at most the float rounding of
// x' / s next to a bound: under one step, at the clip bound only. ONNX
// Runtime drops the Clip when the grid lies inside [lo, hi] (ReLU6 with a
// calibrated maximum of at most 6).
}  // namespace

bool qdq_commutes_with_quantization(const GraphIndex& index, const onnx::NodeProto& node) {
  static const char* const kOps[] = {"Relu",      "Reshape", "Flatten",      "Identity",    "Squeeze",
                                     "Unsqueeze", "Transpose", "DepthToSpace", "SpaceToDepth"};
  for (const char* op : kOps)
    if (node.op_type() == op) return true;
  if (node.op_type() == "Clip") return constant_operands(index, node);
  if (node.op_type() == "Pad") return pads_with_grid_values(index, node);
  return node.op_type() == "MaxPool" && node.output_size() == 1;
}

namespace {

bool same_factors(const QuantLayer& a, const QuantLayer& b) {
  return a.data_scale == b.data_scale && a.data_offset == b.data_offset;
}

// Whether qdq_tensor_pass quantizes `tensor` for its other uses with the
// input factors of a quantized layer that reads it (full-INT8 model).
bool tensor_shares_layer_grid(const GraphIndex& index, const QuantPlan& plan, const std::string& tensor) {
  const auto range = plan.tensor_ranges.find(tensor);
  if (range == plan.tensor_ranges.end() || range->second.bits != 8) return false;
  const auto& uses = index.consumers(tensor);
  return std::any_of(uses.begin(), uses.end(), [&](const onnx::NodeProto* use) {
    const QuantLayer* layer = plan.find(use->name());
    return layer && qdq_quantizes(*layer) && use->input(0) == tensor;
  });
}

// The quantized layer whose input factors every use of `tensor` ends in, or
// nullptr when some use leads elsewhere or the factors differ. All layers
// found have the same factors; the last one in depth-first order names the
// shared QDQ parameters. In the full-INT8 model a use may also be any op
// reading a tensor that qdq_tensor_pass quantizes with those factors (the
// residual Add beside the next conv): it reads the same integers either way.
// The search keeps its own stack: a chain of tens of thousands of commuting
// ops must not exhaust the C++ stack.
const QuantLayer* common_consumer(const GraphIndex& index, const QuantPlan& plan, const std::string& tensor) {
  struct Use {
    const onnx::NodeProto* node;
    const std::string* tensor;
  };
  std::vector<Use> pending;
  // Queues the uses of `t` so that the first one is visited first.
  const auto push_uses = [&](const std::string& t) {
    if (t.empty() || index.is_graph_output(t)) return false;
    const auto& consumers = index.consumers(t);
    for (auto it = consumers.rbegin(); it != consumers.rend(); ++it) pending.push_back({*it, &t});
    return !consumers.empty();
  };
  if (!push_uses(tensor)) return nullptr;
  std::unordered_set<const onnx::NodeProto*> expanded;
  const QuantLayer* found = nullptr;
  while (!pending.empty()) {
    const Use use = pending.back();
    pending.pop_back();
    const onnx::NodeProto& consumer = *use.node;
    if (reads_no_values(consumer, *use.tensor)) continue;
    if (!plan.find(consumer.name()) && !qdq_commutes_with_quantization(index, consumer) &&
        tensor_shares_layer_grid(index, plan, *use.tensor))
      continue;
    for (int i = 1; i < consumer.input_size(); ++i)
      if (consumer.input(i) == *use.tensor) return nullptr;
    const QuantLayer* next = plan.find(consumer.name());
    if (next) {
      if (!qdq_quantizes(*next) || (found && !same_factors(*found, *next))) return nullptr;
      found = next;
      continue;
    }
    // A consumer without a result cannot pass the layer's values on (the
    // input check refuses such nodes; the pass does not rely on it).
    if (consumer.output_size() == 0 || !qdq_commutes_with_quantization(index, consumer)) return nullptr;
    if (expanded.insert(&consumer).second && !push_uses(consumer.output(0))) return nullptr;
  }
  return found;
}

void requantize_output(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& result,
                       const QdqParams& params) {
  const std::string quant = layer.name + ".output_quant";
  const std::string dequant = layer.name + ".output_dequant";
  const std::string original = take_output(graph, result, 0, layer.name + ".output");
  add_node(graph, "QuantizeLinear", quant, {layer.name + ".output", params.scale, params.zero_point},
           {quant + ".output0"});
  add_node(graph, "DequantizeLinear", dequant, {quant + ".output0", params.scale, params.zero_point}, {original});
}

// The ops between a requantized result and the quantized layers it feeds,
// when they form one line (each tensor has one use that reads its values,
// the last feeds quantized layers only) and include a Clip or Pad: ONNX
// Runtime runs those in float between DequantizeLinear and QuantizeLinear.
// On the quantized integers they compute the same thing (see
// integer_chain_op), so the chain runs on UINT8 between
// "<L>.output_quant" and "<L>.output_dequant". Empty when it does not apply.
// Type-only uses: Shape / Size (same shape on UINT8) and CastLike feeding
// only Clip bounds of the chain, which become UINT8 constants.
struct IntegerChain {
  std::vector<onnx::NodeProto*> nodes;
  std::vector<onnx::NodeProto*> cast_likes;  // CastLike nodes of the replaced bounds
};

IntegerChain integer_chain(const GraphIndex& index, const QuantPlan& plan, const std::string& tensor) {
  IntegerChain chain;
  std::vector<onnx::NodeProto*> cast_likes;
  bool clip_or_pad = false;
  for (std::string current = tensor;;) {
    if (current.empty() || index.is_graph_output(current)) return {};
    onnx::NodeProto* next = nullptr;
    bool layers = false;
    for (onnx::NodeProto* consumer : index.consumers(current)) {
      if (consumer->op_type() == "Shape" || consumer->op_type() == "Size") continue;
      if (consumer->op_type() == "CastLike" && consumer->input(0) != current) {
        cast_likes.push_back(consumer);
        continue;
      }
      if (plan.find(consumer->name())) {
        layers = true;
      } else if (next) {
        return {};
      } else {
        next = consumer;
      }
    }
    if (!next) {
      if (!layers || chain.nodes.empty() || !clip_or_pad) return {};
      break;
    }
    if (layers) return {};
    const std::string& op = next->op_type();
    if (op == "Clip") {
      for (int i = 1; i < next->input_size(); ++i)
        if (!next->input(i).empty() && !qdq_constant_scalar(index, next->input(i))) return {};
      clip_or_pad = true;
    } else if (op == "Pad") {
      if (find_attribute(*next, "value") || next->input_size() < 2) return {};
      clip_or_pad = true;
    }
    chain.nodes.push_back(next);
    current = next->output(0);
  }
  // The CastLike outputs must be read only as bounds of the chain's Clips.
  const std::unordered_set<const onnx::NodeProto*> in_chain(chain.nodes.begin(), chain.nodes.end());
  for (onnx::NodeProto* cast_like : cast_likes) {
    if (cast_like->name().empty() || index.is_graph_output(cast_like->output(0))) return {};
    for (onnx::NodeProto* reader : index.consumers(cast_like->output(0)))
      if (!in_chain.count(reader) || reader->op_type() != "Clip" || reader->input(0) == cast_like->output(0)) return {};
    chain.cast_likes.push_back(cast_like);
  }
  return chain;
}

// A UINT8 scalar initializer.
std::string add_uint8_scalar(onnx::GraphProto& graph, const std::string& name, uint8_t value) {
  onnx::TensorProto tensor;
  tensor.set_name(name);
  tensor.set_data_type(onnx::TensorProto::UINT8);
  tensor.set_raw_data(std::string(1, static_cast<char>(value)));
  return add_initializer(graph, std::move(tensor));
}

// q(v) = clamp(round(v / scale) + zero point, 0, 255), QuantizeLinear's rounding.
uint8_t quantize_scalar(float value, float scale, int32_t zero_point) {
  const float q = std::nearbyint(value / scale) + static_cast<float>(zero_point);
  if (std::isnan(q)) return static_cast<uint8_t>(zero_point);
  return static_cast<uint8_t>(std::clamp(q, 0.0f, 255.0f));
}

// The chain op on the integers n = q(x), for q above: q is monotone, so
// q(clip(x, lo, hi)) = clip(n, q(lo), q(hi)) and q(relu(x)) = max(n, q(0)) =
// Clip(n, zero point) (Relu has no UINT8 kernel); zero padding pads with
// q(0), the zero point; max pooling and data movement commute with q. Clip
// takes UINT8 from opset 12 and Pad from opset 11; the QDQ model has 13+.
// The float operands it stops reading go to `replaced`.
// A Relu or Clip whose integer bounds are 0 and 255 (a ReLU6 whose consumer's
// grid ends at or below 6, a Relu with zero point 0) changes no UINT8 value:
// it becomes an Identity, which ONNX Runtime removes, instead of a Clip
// node of its own between two QLinearConvs.
void integer_chain_op(onnx::GraphProto& graph, const GraphIndex& index, onnx::NodeProto& node,
                      const QuantLayer& consumer, const QdqParams& params, std::vector<std::string>& replaced) {
  const auto zero_point = static_cast<int32_t>(consumer.data_offset + consumer.act_format.unsigned_shift());
  auto to_identity = [&] {
    for (int i = 1; i < node.input_size(); ++i)
      if (!node.input(i).empty()) replaced.push_back(node.input(i));
    node.set_op_type("Identity");
    node.mutable_input()->DeleteSubrange(1, node.input_size() - 1);
  };
  if (node.op_type() == "Relu") {
    if (zero_point <= 0) return to_identity();
    node.set_op_type("Clip");
    node.add_input(params.zero_point);
  } else if (node.op_type() == "Clip") {
    static const char* const kBounds[] = {"", ".quantized_min", ".quantized_max"};
    uint8_t bounds[3] = {0, 0, 255};
    for (int i = 1; i < node.input_size() && i < 3; ++i)
      if (!node.input(i).empty())
        bounds[i] = quantize_scalar(*qdq_constant_scalar(index, node.input(i)), consumer.data_scale, zero_point);
    if (bounds[1] == 0 && bounds[2] == 255) return to_identity();
    for (int i = 1; i < node.input_size() && i < 3; ++i) {
      if (node.input(i).empty()) continue;
      replaced.push_back(node.input(i));
      node.set_input(i, add_uint8_scalar(graph, node.name() + kBounds[i], bounds[i]));
    }
  } else if (node.op_type() == "Pad") {
    // The fill (used by constant mode only) must have the data type.
    if (node.input_size() < 3) {
      node.add_input(params.zero_point);
    } else {
      replaced.push_back(node.input(2));
      node.set_input(2, params.zero_point);
    }
  }
}

// `index` was taken before the rewrite; the uses of the chain's tensors
// that it lists are still those of the graph when each is read.
void requantize_through_integer_chain(onnx::GraphProto& graph, const GraphIndex& index, const QuantLayer& layer,
                                      onnx::NodeProto& result, const QuantLayer& consumer, const QdqParams& params,
                                      const IntegerChain& chain) {
  const std::string quant = layer.name + ".output_quant";
  const std::string dequant = layer.name + ".output_dequant";
  std::string float_tensor = take_output(graph, result, 0, layer.name + ".output");
  add_node(graph, "QuantizeLinear", quant, {layer.name + ".output", params.scale, params.zero_point},
           {quant + ".output0"});
  std::string integers = quant + ".output0";
  std::vector<std::string> replaced;
  for (onnx::NodeProto* node : chain.nodes) {
    // float_tensor disappears: its Shape / Size uses read the integers.
    for (onnx::NodeProto* reader : index.consumers(float_tensor))
      if (reader->op_type() == "Shape" || reader->op_type() == "Size") reader->set_input(0, integers);
    remove_value_info(graph, float_tensor);
    node->set_input(0, integers);
    integer_chain_op(graph, index, *node, consumer, params, replaced);
    float_tensor = node->output(0);
    integers = float_tensor + ".quantized";
    node->set_output(0, integers);
  }
  add_node(graph, "DequantizeLinear", dequant, {integers, params.scale, params.zero_point}, {float_tensor});
  // The CastLike bounds and the constants only they read.
  const std::unordered_set<const onnx::NodeProto*> cast_likes(chain.cast_likes.begin(), chain.cast_likes.end());
  std::vector<std::string> doomed;
  for (const onnx::NodeProto* cast_like : chain.cast_likes) {
    doomed.push_back(cast_like->name());
    const onnx::NodeProto* source = index.producer(cast_like->input(0));
    if (source && !source->name().empty() && source->op_type() == "Constant" &&
        !index.is_graph_output(cast_like->input(0))) {
      const auto& readers = index.consumers(cast_like->input(0));
      if (std::all_of(readers.begin(), readers.end(), [&](const onnx::NodeProto* r) { return cast_likes.count(r) > 0; }))
        doomed.push_back(source->name());
    }
  }
  std::sort(doomed.begin(), doomed.end());
  doomed.erase(std::unique(doomed.begin(), doomed.end()), doomed.end());
  remove_nodes(graph, doomed);
  qdq_drop_unread(graph, replaced);
}

void to_conv_integer(onnx::GraphProto& graph, const QuantLayer& layer, onnx::NodeProto& node) {
  const std::string bias = node.input_size() > 2 ? node.input(2) : "";
  const onnx::TensorProto* weight = resolve_constant(graph, node.input(1));
  const int64_t channels = weight->dims(0);
  const int rank = weight->dims_size();
  node.set_op_type("ConvInteger");
  while (node.input_size() > 2) node.mutable_input()->RemoveLast();

  std::string accumulator = layer.name + ".accumulator";
  const std::string original = take_output(graph, node, 0, accumulator);
  if (!bias.empty()) {
    const std::string add = layer.name + ".bias_add";
    add_node(graph, "Add", add, {accumulator, bias}, {add + ".output0"});
    accumulator = add + ".output0";
  }
  const std::string cast = layer.name + ".accumulator_cast";
  set_int_attribute(add_node(graph, "Cast", cast, {accumulator}, {cast + ".output0"}), "to",
                    onnx::TensorProto::FLOAT);
  std::vector<int64_t> dims(static_cast<size_t>(rank), 1);
  dims[1] = channels;
  const std::string dequant = layer.name + ".dequant";
  const std::vector<float> scales = qdq_channel_values(dequant_scales(layer), channels);
  add_initializer(graph, make_float_tensor(dequant + ".scale", scales.size() == 1 ? std::vector<int64_t>{} : dims,
                                           scales));
  add_node(graph, "Mul", dequant, {cast + ".output0", dequant + ".scale"}, {original});
}

void rewrite_output(onnx::GraphProto& graph, const QuantPlan& plan, const QuantLayer& layer) {
  onnx::NodeProto& node = layer_node(graph, layer);
  onnx::NodeProto& result = qdq_result_node(graph, node);
  const GraphIndex index(graph);
  if (const QuantLayer* consumer = common_consumer(index, plan, result.output(0))) {
    const QdqParams params = qdq_input_params(graph, *consumer);
    const IntegerChain chain = integer_chain(index, plan, result.output(0));
    // A regrouped ConvTranspose's DepthToSpace stays float: compare
    // (qdq_parity.cc) reads the layer's result after it.
    if (chain.nodes.empty() || chain.nodes.front()->name() == layer.name + ".depth_to_space")
      requantize_output(graph, layer, result, params);
    else
      requantize_through_integer_chain(graph, index, layer, result, *consumer, params, chain);
  } else if (node.op_type() == "AveragePool") {
    requantize_output(graph, layer, result, qdq_input_params(graph, layer));
  } else if (plan.tensor_ranges.count(qdq_after_activations(index, result.output(0)))) {
    // Full-INT8 model: qdq_tensor_pass quantizes the result (after its
    // Relu / Clip), and Runtime runs the layer as QLinearConv / QGemm.
  } else if (node.op_type() == "Conv") {
    to_conv_integer(graph, layer, node);
  }
}

}  // namespace

void qdq_output_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  for (const auto& layer : plan.layers)
    if (qdq_quantizes(layer)) rewrite_output(graph, plan, layer);
}

}  // namespace amct
