#include <vector>

#include "amct/model_prep.h"
#include "amct/onnx_graph.h"
#include "amct/weight_layout.h"

namespace amct {

void fold_weight_transposes(onnx::GraphProto& graph) {
  std::vector<std::string> folded;
  for (auto& node : *graph.mutable_node()) {
    if (node.op_type() != "MatMul" || node.input_size() != 2) continue;
    onnx::NodeProto* transpose = find_producer(graph, node.input(1));
    if (!transpose || transpose->op_type() != "Transpose" || transpose->input_size() != 1) continue;
    onnx::TensorProto* weight = find_initializer(graph, transpose->input(0));
    if (!weight || weight->dims_size() != 2) continue;
    const auto perm = get_ints_attribute(*transpose, "perm");
    if (!perm.empty() && !(perm.size() == 2 && perm[0] == 1 && perm[1] == 0)) continue;
    // The initializer may feed other nodes (e.g. tied weights): only fold when
    // the Transpose is its sole reader and the MatMul the Transpose's.
    if (find_consumers(graph, weight->name()).size() != 1 || find_consumers(graph, transpose->output(0)).size() != 1)
      continue;

    const int64_t rows = weight->dims(0), cols = weight->dims(1);
    // Where the weight lies: a Linear of GBs is not held twice.
    transpose_2d_in_place(float_values_in_place(*weight), rows, cols);
    weight->set_dims(0, cols);
    weight->set_dims(1, rows);
    node.set_input(1, weight->name());
    folded.push_back(transpose->name());
  }
  remove_nodes(graph, folded);
}

}  // namespace amct
