// QuantFusion (docs/amct-reference.md#quantfusion): layers that read the same tensor with the same
// activation factors share one AscendQuant; the first one is kept.
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

// Two quants are interchangeable when scale_d (bit for bit), offset_d and the
// activation bits agree.
using QuantKey = std::tuple<std::string, uint32_t, int32_t, int>;

QuantKey key_of(const onnx::NodeProto& quant, const QuantLayer& layer) {
  uint32_t scale_bits;
  std::memcpy(&scale_bits, &layer.data_scale, sizeof scale_bits);
  return {quant.input(0), scale_bits, layer.data_offset, layer.act_format.bits()};
}

}  // namespace

void quant_fusion_pass(onnx::GraphProto& graph, const QuantPlan& plan) {
  std::map<QuantKey, std::string> kept_output;
  struct Duplicate {
    std::string name, output, kept_output;
  };
  std::vector<Duplicate> duplicates;
  for (const auto& node : graph.node()) {
    if (node.op_type() != "AscendQuant") continue;
    const QuantLayer* layer = layer_of_node(plan, node.name(), ".quant");
    if (!layer) continue;
    const auto [kept, first] = kept_output.emplace(key_of(node, *layer), node.output(0));
    if (!first) duplicates.push_back({node.name(), node.output(0), kept->second});
  }
  std::vector<std::string> removed;
  for (const auto& d : duplicates) {
    rename_input_uses(graph, d.output, d.kept_output);
    removed.push_back(d.name);
  }
  remove_nodes(graph, removed);
}

}  // namespace amct
