// QdqFoldPad: a zero padding right before a convolution becomes the
// convolution's own padding.
//
// A ZeroPad2d between two quantized convolutions (EfficientNet-Lite's "same"
// padding) runs on the UINT8 integers after QdqOutput: Pad(n, zero point) ->
// DequantizeLinear -> Conv. Dequantizing the zero point gives exactly 0, so
// that is Conv over the zero-padded dequantized tensor, which a Conv with the
// pads added to its own computes, and ONNX Runtime then runs one QLinearConv
// with no Pad node before it (quantize_static's graph has none either: the
// exporter's optimizer folds the pads there).
//
// The same holds for a zero padding of the float tensor that a layer's
// QuantizeLinear reads (a stem's padding of the model input): Pad(x, 0) ->
// QuantizeLinear -> DequantizeLinear -> Conv. QuantizeLinear maps 0 to the
// zero point whatever the scale, so the padded border dequantizes to 0 as
// well; the QuantizeLinear then reads x and the Conv pads.
//
// Folded only when nothing else reads the Pad's, the QuantizeLinear's or the
// DequantizeLinear's output, the fill is the DequantizeLinear's own zero
// point (0 before a QuantizeLinear), the pads are constant, non-negative and
// on the spatial axes only, and the Conv pads explicitly (auto_pad NOTSET).
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// The Conv pads after adding those of `pad` (ONNX Pad order: all begins,
// then all ends, over N, C and the spatial axes); nullopt if it cannot fold.
std::optional<std::vector<int64_t>> folded_pads(const GraphIndex& index, const onnx::NodeProto& pad,
                                                const onnx::NodeProto& conv) {
  if (get_string_attribute(pad, "mode", "constant") != "constant" || find_attribute(pad, "pads")) return std::nullopt;
  if (pad.input_size() < 2 || pad.input(1).empty() || (pad.input_size() > 3 && !pad.input(3).empty()))
    return std::nullopt;
  const onnx::TensorProto* pads_tensor = index.resolve_constant(pad.input(1));
  if (!pads_tensor) return std::nullopt;
  const std::optional<std::vector<int64_t>> pads = qdq_int64_values(*pads_tensor);
  if (!pads || pads->size() < 6 || pads->size() % 2 != 0) return std::nullopt;
  const size_t rank = pads->size() / 2;
  const size_t spatial = rank - 2;
  if ((*pads)[0] != 0 || (*pads)[1] != 0 || (*pads)[rank] != 0 || (*pads)[rank + 1] != 0) return std::nullopt;
  // Bounded, so that the sums below cannot overflow on a hostile graph.
  constexpr int64_t kMaxPad = int64_t{1} << 31;
  for (const int64_t p : *pads)
    if (p < 0 || p > kMaxPad) return std::nullopt;
  if (get_string_attribute(conv, "auto_pad", "NOTSET") != "NOTSET") return std::nullopt;
  std::vector<int64_t> conv_pads = get_ints_attribute(conv, "pads");
  if (conv_pads.empty()) conv_pads.assign(2 * spatial, 0);
  if (conv_pads.size() != 2 * spatial) return std::nullopt;
  for (const int64_t p : conv_pads)
    if (p < 0 || p > kMaxPad) return std::nullopt;
  for (size_t axis = 0; axis < spatial; ++axis) {
    conv_pads[axis] += (*pads)[2 + axis];
    conv_pads[spatial + axis] += (*pads)[rank + 2 + axis];
  }
  return conv_pads;
}

// The only reader of `tensor` when it has exactly one and is not a graph output.
onnx::NodeProto* sole_reader(const GraphIndex& index, const std::string& tensor) {
  if (index.is_graph_output(tensor)) return nullptr;
  const auto& uses = index.consumers(tensor);
  return uses.size() == 1 ? uses.front() : nullptr;
}

// The DequantizeLinear after `pad` whose result only `conv` reads as its
// data, with `quant` set when a QuantizeLinear of the float padding comes
// first; nullptr when the pattern or its fill does not match.
onnx::NodeProto* dequant_before_conv(const GraphIndex& index, onnx::NodeProto& pad, onnx::NodeProto*& quant) {
  onnx::NodeProto* next = sole_reader(index, pad.output(0));
  if (!next || next->input_size() < 3 || next->input(0) != pad.output(0)) return nullptr;
  quant = nullptr;
  if (next->op_type() == "QuantizeLinear") {
    if (!qdq_fills_with_zero(index, pad)) return nullptr;
    quant = next;
    next = sole_reader(index, quant->output(0));
    if (!next || next->op_type() != "DequantizeLinear" || next->input_size() < 3 ||
        next->input(0) != quant->output(0) || next->input(1) != quant->input(1) || next->input(2) != quant->input(2))
      return nullptr;
  } else if (next->op_type() != "DequantizeLinear" || pad.input_size() < 3 || next->input(2) != pad.input(2)) {
    return nullptr;
  }
  return next;
}

}  // namespace

void qdq_fold_pad_pass(onnx::GraphProto& graph, const QuantPlan&) {
  const GraphIndex index(graph);
  std::vector<std::string> folded;
  std::vector<std::string> operands;  // pads and fills, dropped once unread
  std::unordered_set<std::string> reshaped;
  for (onnx::NodeProto& pad : *graph.mutable_node()) {
    if (pad.op_type() != "Pad" || pad.name().empty() || pad.output_size() != 1 || pad.input_size() < 2) continue;
    onnx::NodeProto* quant = nullptr;
    onnx::NodeProto* dequant = dequant_before_conv(index, pad, quant);
    if (!dequant) continue;
    onnx::NodeProto* conv = sole_reader(index, dequant->output(0));
    if (!conv || conv->op_type() != "Conv" || conv->input(0) != dequant->output(0)) continue;
    const std::optional<std::vector<int64_t>> pads = folded_pads(index, pad, *conv);
    if (!pads) continue;
    set_ints_attribute(*conv, "pads", *pads);
    (quant ? quant : dequant)->set_input(0, pad.input(0));
    // The tensors after the Pad keep their names but lose the padding: a
    // declared shape of theirs would contradict what Runtime infers. The
    // Pad's own output goes away.
    reshaped.insert(pad.output(0));
    reshaped.insert(dequant->output(0));
    if (quant) reshaped.insert(quant->output(0));
    folded.push_back(pad.name());
    operands.push_back(pad.input(1));
    if (pad.input_size() > 2) operands.push_back(pad.input(2));
  }
  if (folded.empty()) return;
  remove_nodes(graph, folded);
  qdq_drop_unread(graph, operands);
  remove_value_infos(graph, reshaped);
}

}  // namespace amct
