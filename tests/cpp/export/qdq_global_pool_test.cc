// QdqGlobalPool on hand-built graphs: a ReduceMean over all spatial axes
// whose input and output have ranges becomes GlobalAveragePool, and every
// other mean stays as it is.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "amct/onnx_graph.h"
#include "amct/save_passes.h"

namespace amct {
namespace {

void declare(onnx::GraphProto& g, const std::string& name, int rank) {
  onnx::ValueInfoProto& info = *g.add_value_info();
  info.set_name(name);
  auto* shape = info.mutable_type()->mutable_tensor_type()->mutable_shape();
  for (int i = 0; i < rank; ++i) shape->add_dim()->set_dim_value(4);
}

// x (declared with `rank`) -> ReduceMean "mean" -> pooled; axes as an
// attribute, or as the INT64 initializer "axes" when `axes_input`.
onnx::GraphProto mean_graph(const std::vector<int64_t>& axes, int rank, bool axes_input = false) {
  onnx::GraphProto g;
  if (rank > 0) declare(g, "x", rank);
  onnx::NodeProto& mean = *g.add_node();
  mean.set_op_type("ReduceMean");
  mean.set_name("mean");
  mean.add_input("x");
  mean.add_output("pooled");
  if (axes_input) {
    onnx::TensorProto& t = *g.add_initializer();
    t.set_name("axes");
    t.set_data_type(onnx::TensorProto::INT64);
    t.add_dims(static_cast<int64_t>(axes.size()));
    for (const int64_t a : axes) t.add_int64_data(a);
    mean.add_input("axes");
  } else {
    set_ints_attribute(mean, "axes", axes);
  }
  g.add_output()->set_name("pooled");
  return g;
}

QuantPlan ranges_for(const std::vector<std::string>& tensors) {
  QuantPlan plan;
  for (const std::string& t : tensors) plan.tensor_ranges[t] = TensorRange{t, TensorRole::kTensor, 0.1f, -128, 8};
  return plan;
}

TEST(QdqGlobalPool, SpatialMeanBecomesGlobalAveragePool) {
  for (const bool axes_input : {false, true}) {
    onnx::GraphProto g = mean_graph({-1, -2}, 4, axes_input);
    qdq_global_pool_pass(g, ranges_for({"x", "pooled"}));
    const onnx::NodeProto& node = g.node(0);
    EXPECT_EQ(node.op_type(), "GlobalAveragePool");
    EXPECT_EQ(node.name(), "mean");
    ASSERT_EQ(node.input_size(), 1);
    EXPECT_EQ(node.input(0), "x");
    EXPECT_EQ(node.output(0), "pooled");
    EXPECT_EQ(node.attribute_size(), 0);
    EXPECT_EQ(g.initializer_size(), 0);  // the axes are not read any more
  }
  // A 3-D input has one spatial axis.
  onnx::GraphProto g = mean_graph({2}, 3);
  qdq_global_pool_pass(g, ranges_for({"x", "pooled"}));
  EXPECT_EQ(g.node(0).op_type(), "GlobalAveragePool");
}

TEST(QdqGlobalPool, LeavesOtherMeans) {
  struct Case {
    const char* what;
    onnx::GraphProto graph;
    QuantPlan plan;
  };
  std::vector<Case> cases;
  const std::vector<std::string> both{"x", "pooled"};
  cases.push_back({"channel mean", mean_graph({1}, 4), ranges_for(both)});
  cases.push_back({"one of two spatial axes", mean_graph({3}, 4), ranges_for(both)});
  cases.push_back({"two of three spatial axes", mean_graph({2, 3}, 5), ranges_for(both)});
  cases.push_back({"axis out of range", mean_graph({2, 4}, 4), ranges_for(both)});
  cases.push_back({"rank not declared", mean_graph({2, 3}, 0), ranges_for(both)});
  cases.push_back({"no range for the result", mean_graph({2, 3}, 4), ranges_for({"x"})});
  cases.push_back({"layer-only model", mean_graph({2, 3}, 4), QuantPlan{}});
  {
    onnx::GraphProto g = mean_graph({2, 3}, 4);
    set_int_attribute(*g.mutable_node(0), "keepdims", 0);
    cases.push_back({"keepdims 0", std::move(g), ranges_for(both)});
  }
  {
    onnx::GraphProto g = mean_graph({2, 3}, 4);
    remove_attribute(*g.mutable_node(0), "axes");
    cases.push_back({"all axes", std::move(g), ranges_for(both)});
  }
  {
    onnx::GraphProto g = mean_graph({2, 3}, 4, true);
    g.mutable_initializer(0)->set_data_type(onnx::TensorProto::INT32);
    cases.push_back({"axes of another type", std::move(g), ranges_for(both)});
  }
  for (Case& c : cases) {
    const std::string before = c.graph.SerializeAsString();
    qdq_global_pool_pass(c.graph, c.plan);
    EXPECT_EQ(c.graph.SerializeAsString(), before) << c.what;
  }
}

}  // namespace
}  // namespace amct
