// Hostile modified ONNX models for save_model (issue 10, items 1, 2, 5, 10,
// 13, 17): each is refused with a message naming the file, the node or layer
// and the tensor, before anything is written; or, for very long chains of
// nodes, saved in linear time without exhausting the stack.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "amct/error.h"
#include "amct/layer_graph.h"
#include "amct/model_prep.h"
#include "amct/onnx_validate.h"
#include "amct/save_passes.h"
#include "save_test_support.h"

namespace amct::test {
namespace {

const std::string kConvRecord = "    scale_d: 0.1\n    offset_d: 0\n    scale_w: 0.01\n    offset_w: 0\n";

// save_model on `model` with `record` must fail with a message holding each
// of `parts`, and write nothing.
void expect_refused(const onnx::ModelProto& model, const std::string& record, const std::vector<std::string>& parts) {
  const std::string dir = fresh_dir();
  save_onnx_model(model, dir + "/modified.onnx");
  write_text(dir + "/record.txt", record);
  try {
    save_model(dir + "/modified.onnx", dir + "/record.txt", dir + "/out/net");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find("internal error"), std::string::npos) << message;
    for (const auto& part : parts) EXPECT_NE(message.find(part), std::string::npos) << part << " in " << message;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

// x[1,4,2,2] -> ConvTranspose d (W [4,2,2,2], group 2: 4 output channels) -> y.
ModelBuilder deconv(const std::vector<std::string>& inputs) {
  ModelBuilder b;
  b.input("x", {1, 4, 2, 2}).output("y", {});
  b.initializer("d.weight", {4, 2, 2, 2}, std::vector<float>(32, 0.25f));
  b.initializer("d.bias", {4}, {0.1f, 0.2f, 0.3f, 0.4f});
  set_int_attribute(b.layer("ConvTranspose", "d", inputs, "y"), "group", 2);
  return b;
}

// ---- item 1: ConvTranspose group ----

TEST(HostileGraph, DeconvGroupZeroIsRefused) {
  ModelBuilder b = deconv({"x", "d.weight", "d.bias"});
  set_int_attribute(*find_node(b.graph(), "d"), "group", 0);
  expect_refused(b.model(), record_entry("d", kConvRecord),
                 {"record.txt", "layer 'd'", "group attribute is 0; expected a positive number of groups"});
}

TEST(HostileGraph, DeconvFloatGroupIsRefused) {
  ModelBuilder b = deconv({"x", "d.weight", "d.bias"});
  set_float_attribute(*find_node(b.graph(), "d"), "group", 2.0f);
  expect_refused(b.model(), record_entry("d", kConvRecord),
                 {"record.txt", "layer 'd'", "attribute 'group' has type FLOAT; expected INT"});
}

TEST(HostileGraph, GroupNotDividingTheChannelsIsRefused) {
  ModelBuilder b;
  b.input("x", {1, 4, 2, 2}).output("y", {});
  b.initializer("c.weight", {3, 2, 1, 1}, std::vector<float>(6, 0.25f));
  set_int_attribute(b.layer("Conv", "c", {"x", "c.weight"}, "y"), "group", 2);
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"layer 'c'", "does not split into group=2 groups: dimension 0 (3) is not a multiple of 2"});
}

// ---- item 2: the bias must be its own 1-D tensor of Cout values ----

TEST(HostileGraph, DeconvBiasThatIsItsWeightIsRefused) {
  expect_refused(deconv({"x", "d.weight", "d.weight"}).model(), record_entry("d", kConvRecord),
                 {"layer 'd'", "its bias (input 2) 'd.weight' is its weight tensor",
                  "expected a distinct constant 1-D tensor of 4 values"});
}

TEST(HostileGraph, BiasAliasingTheWeightThroughIdentityIsRefused) {
  ModelBuilder b = deconv({"x", "d.weight", "alias"});
  b.node("Identity", "alias_of_weight", {"d.weight"}, {"alias"});
  expect_refused(b.model(), record_entry("d", kConvRecord), {"layer 'd'", "'alias' is its weight tensor"});
}

TEST(HostileGraph, BiasOfTheWrongShapeIsRefused) {
  ModelBuilder b = deconv({"x", "d.weight", "short"});
  b.initializer("short", {2}, {0.1f, 0.2f});
  expect_refused(b.model(), record_entry("d", kConvRecord),
                 {"layer 'd'", "its bias 'short' has dims [2]; expected a distinct constant 1-D tensor of 4 values"});
}

TEST(HostileGraph, ExclusiveInitializerCopiesATensorTheNodeReadsTwice) {
  ModelBuilder b = deconv({"x", "d.weight", "d.weight"});
  onnx::NodeProto& node = *find_node(b.graph(), "d");
  onnx::TensorProto& weight = exclusive_initializer(b.graph(), node, 1, "d.weight_copy", "weight");
  EXPECT_EQ(weight.name(), "d.weight_copy");
  EXPECT_EQ(node.input(1), "d.weight_copy");
  EXPECT_EQ(node.input(2), "d.weight");
}

// ---- item 5: long chains save in linear time, without recursion ----

// x -> Conv a -> [Relu] -> Identity x n -> [Clip(0, 6)] -> Conv b (into_layer) or graph output y.
onnx::ModelProto chain_model(int n, bool into_layer, bool clip) {
  ModelBuilder b(13);
  b.input("x", {1, 2, 4, 4}).output("y", {});
  b.initializer("a.weight", {2, 2, 1, 1}, {0.5f, -0.25f, 0.125f, 0.75f});
  b.initializer("a.bias", {2}, {0.1f, -0.1f});
  b.initializer("b.weight", {2, 2, 1, 1}, {0.5f, 0.25f, -0.125f, 0.75f});
  b.initializer("lo", {}, {0.0f});
  b.initializer("hi", {}, {6.0f});
  b.layer("Conv", "a", {"x", "a.weight", "a.bias"}, "t0");
  std::string tensor = "t0";
  if (clip) {
    b.node("Relu", "relu", {tensor}, {"relu.out"});
    tensor = "relu.out";
  }
  for (int i = 0; i < n; ++i) {
    const std::string out = "id" + std::to_string(i) + ".out";
    b.node("Identity", "id" + std::to_string(i), {tensor}, {out});
    tensor = out;
  }
  if (clip) {
    b.node("Clip", "clip", {tensor, "lo", "hi"}, {"clip.out"});
    tensor = "clip.out";
  }
  if (into_layer) {
    b.layer("Conv", "b", {tensor, "b.weight"}, "y");
  } else {
    b.graph().mutable_node(b.graph().node_size() - 1)->set_output(0, "y");
  }
  return b.model();
}

Saved timed_save(const onnx::ModelProto& model, const std::string& record, const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  Saved saved = run_save(model, record, fresh_dir());
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  std::cout << "[ timing   ] " << what << ": save_model took " << seconds.count() << " s\n";
  return saved;
}

TEST(HostileGraph, LongIdentityChainsIntoALayerSave) {
  const std::string record = record_entry("a", kConvRecord) + record_entry("b", kConvRecord);
  for (int n : {40000, 100000}) {
    const Saved saved = timed_save(chain_model(n, true, false), record, std::to_string(n) + " Identity into a layer");
    // The walk reached b through every Identity: a's result is requantized
    // with b's input factors.
    EXPECT_NE(find_node(saved.qdq.graph(), "a.output_quant"), nullptr);
    EXPECT_EQ(node_named(saved.qdq, "id" + std::to_string(n - 1)).op_type(), "Identity");
  }
}

TEST(HostileGraph, LongIdentityChainsIntoTheOutputSave) {
  for (int n : {40000, 100000}) {
    const Saved saved =
        timed_save(chain_model(n, false, false), record_entry("a", kConvRecord), std::to_string(n) + " Identity to y");
    EXPECT_EQ(node_named(saved.qdq, "a").op_type(), "ConvInteger");
  }
}

TEST(HostileGraph, LongIntegerChainSaves) {
  const std::string record = record_entry("a", kConvRecord) + record_entry("b", kConvRecord);
  const int n = 100000;
  const Saved saved = timed_save(chain_model(n, true, true), record, "Relu, 100000 Identity, Clip into a layer");
  // The whole chain runs on UINT8: Relu and Clip read quantized bounds, the
  // float bounds are gone.
  EXPECT_EQ(node_named(saved.qdq, "relu").op_type(), "Clip");
  EXPECT_EQ(node_named(saved.qdq, "clip").input(1), "clip.quantized_min");
  EXPECT_EQ(find_initializer(saved.qdq.graph(), "lo"), nullptr);
  EXPECT_EQ(node_named(saved.qdq, "id99999").output(0), "id99999.out.quantized");
}

TEST(HostileGraph, RemoveDeadNodesIsLinearOnALongDeadChain) {
  ModelBuilder b;
  b.input("x", {1}).output("y", {});
  b.node("Relu", "live", {"x"}, {"y"});
  std::string tensor = "x";
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const std::string out = "dead" + std::to_string(i);
    b.node("Identity", out, {tensor}, {out});
    tensor = out;
  }
  onnx::GraphProto graph = b.graph();
  const auto start = std::chrono::steady_clock::now();
  remove_dead_nodes(graph);
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  std::cout << "[ timing   ] remove_dead_nodes on " << n << " dead nodes took " << seconds.count() << " s\n";
  ASSERT_EQ(graph.node_size(), 1);
  EXPECT_EQ(graph.node(0).name(), "live");
}

TEST(HostileGraph, GraphIndexAgreesWithTheScans) {
  ModelBuilder b;
  b.input("x", {1}).output("y", {});
  b.initializer("w", {1}, {2.0f});
  b.node("Identity", "alias", {"w"}, {"w2"});
  b.node("Mul", "twice", {"x", "x"}, {"m"});
  b.node("Add", "add", {"m", "w2"}, {"y"});
  b.node("Clip", "clip", {"m", "", "w2"}, {"c"});
  GraphIndex index(b.graph());
  for (const char* tensor : {"x", "w", "w2", "m", "y", "c"}) {
    EXPECT_EQ(index.producer(tensor), find_producer(b.graph(), tensor)) << tensor;
    EXPECT_EQ(index.consumers(tensor), find_consumers(b.graph(), tensor)) << tensor;
  }
  EXPECT_TRUE(index.consumers("").empty());
  EXPECT_EQ(index.resolve_constant("w2"), find_initializer(b.graph(), "w"));
  EXPECT_EQ(index.resolve_constant("m"), nullptr);
  EXPECT_TRUE(index.is_graph_output("y"));
  EXPECT_FALSE(index.is_graph_output("m"));
}

// ---- item 13: the input model is validated before anything is written ----

// x -> Conv c -> y, with the record of c: a valid model to break.
ModelBuilder valid_conv() {
  ModelBuilder b;
  b.input("x", {1, 2, 2, 2}).output("y", {});
  b.initializer("c.weight", {2, 2, 1, 1}, {0.1f, 0.2f, 0.3f, 0.4f});
  b.layer("Conv", "c", {"x", "c.weight"}, "y");
  return b;
}

TEST(HostileGraph, UndefinedNodeInputIsRefused) {
  ModelBuilder b = valid_conv();
  b.node("Relu", "r", {"nowhere"}, {"r.out"});
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"modified.onnx", "node 'r' (Relu): input 0 'nowhere' is not defined"});
}

TEST(HostileGraph, TwoProducersOfOneTensorAreRefused) {
  ModelBuilder b = valid_conv();
  b.node("Relu", "r", {"x"}, {"y"});
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"modified.onnx", "tensor 'y' is written by node 'c' (Conv) and by node 'r' (Relu)"});
}

TEST(HostileGraph, NodeOutputShadowingAnInitializerIsRefused) {
  ModelBuilder b = valid_conv();
  b.node("Relu", "r", {"x"}, {"c.weight"});
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"node 'r' (Relu) writes tensor 'c.weight', which is also a graph initializer"});
}

TEST(HostileGraph, InitializerDataNotMatchingDimsIsRefused) {
  ModelBuilder b = valid_conv();
  b.graph().mutable_initializer(0)->mutable_raw_data()->resize(12);
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"modified.onnx", "initializer 'c.weight' (FLOAT, 4 elements) has 12 bytes of raw_data; expected 16"});
}

TEST(HostileGraph, TypedInitializerDataNotMatchingDimsIsRefused) {
  ModelBuilder b = valid_conv();
  onnx::TensorProto& bias = *b.graph().add_initializer();
  bias.set_name("c.bias");
  bias.set_data_type(onnx::TensorProto::DOUBLE);
  bias.add_dims(2);
  bias.add_double_data(0.5);
  b.graph().mutable_node(0)->add_input("c.bias");
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"initializer 'c.bias' (DOUBLE, 2 elements) has 1 values in double_data; expected 2"});
}

TEST(HostileGraph, OverflowingDimsAreRefused) {
  ModelBuilder b = valid_conv();
  onnx::TensorProto& huge = *b.graph().add_initializer();
  huge.set_name("huge");
  huge.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : {int64_t{1} << 32, int64_t{1} << 32, int64_t{3}}) huge.add_dims(d);
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"initializer 'huge' has dims whose product does not fit in int64"});
}

TEST(HostileGraph, UnproducedGraphOutputIsRefused) {
  ModelBuilder b = valid_conv();
  b.output("ghost", {});
  expect_refused(b.model(), record_entry("c", kConvRecord), {"modified.onnx", "graph output 'ghost' is not defined"});
}

TEST(HostileGraph, DuplicateLayerNodeNameIsRefused) {
  ModelBuilder b = valid_conv();
  b.node("Relu", "c", {"x"}, {"r.out"});
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"modified.onnx", "two nodes are named 'c' (Conv and Relu)"});
}

TEST(HostileGraph, CycleIsRefused) {
  ModelBuilder b = valid_conv();
  b.node("Add", "loop_a", {"x", "loop_b.out"}, {"loop_a.out"});
  b.node("Relu", "loop_b", {"loop_a.out"}, {"loop_b.out"});
  b.node("Relu", "after", {"loop_b.out"}, {"after.out"});
  expect_refused(b.model(), record_entry("c", kConvRecord), {"modified.onnx", "is on a cycle"});
}

TEST(HostileGraph, UnsortedAcyclicGraphIsAccepted) {
  ModelBuilder b;
  b.input("x", {1, 2, 2, 2}).output("y", {});
  b.initializer("c.weight", {2, 2, 1, 1}, {0.1f, 0.2f, 0.3f, 0.4f});
  b.node("Relu", "r", {"c.out"}, {"y"});
  b.layer("Conv", "c", {"x", "c.weight"}, "c.out");
  EXPECT_NO_THROW(validate_onnx_model(b.model(), "m.onnx"));
}

TEST(HostileGraph, SubgraphMayReadOuterTensors) {
  ModelBuilder b = valid_conv();
  b.input("cond", {});
  onnx::NodeProto& branch = b.node("If", "if", {"cond"}, {"if.out"});
  onnx::GraphProto then_graph;
  then_graph.set_name("then");
  auto* n = then_graph.add_node();
  n->set_op_type("Relu");
  n->add_input("y");
  n->add_output("then.out");
  then_graph.add_output()->set_name("then.out");
  auto* attr = branch.add_attribute();
  attr->set_name("then_branch");
  attr->set_type(onnx::AttributeProto::GRAPH);
  *attr->mutable_g() = then_graph;
  EXPECT_NO_THROW(validate_onnx_model(b.model(), "m.onnx"));
  n->set_input(0, "nowhere");
  *attr->mutable_g() = then_graph;
  try {
    validate_onnx_model(b.model(), "m.onnx");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("subgraph 'then_branch' of node 'if' (If): node #0 (Relu): input 0 'nowhere'"),
              std::string::npos)
        << e.what();
  }
}

TEST(HostileGraph, ExportedModelIsValidatedByPrepareModel) {
  ModelBuilder b = valid_conv();
  b.node("Relu", "r", {"nowhere"}, {"r.out"});
  try {
    prepare_model(b.model(), {});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ONNX model 'exported model': node 'r' (Relu): input 0 'nowhere'"),
              std::string::npos)
        << e.what();
  }
}

// ---- item 17: nodes without outputs, external data ----

TEST(HostileGraph, NodeWithoutOutputsIsRefused) {
  ModelBuilder b = valid_conv();
  b.node("Relu", "r", {"x"}, {});
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"modified.onnx", "node 'r' (Relu) has no outputs; expected at least one"});
}

TEST(HostileGraph, LayerWithoutOutputsIsRefused) {
  ModelBuilder b = valid_conv();
  b.graph().mutable_node(0)->clear_output();
  b.node("Identity", "keep", {"x"}, {"y"});
  expect_refused(b.model(), record_entry("c", kConvRecord), {"node 'c' (Conv) has no outputs"});
}

TEST(HostileGraph, LayerWithoutDataInputIsRefused) {
  ModelBuilder b;
  b.output("y", {});
  b.layer("AveragePool", "pool", {}, "y");
  expect_refused(b.model(), record_entry("pool", "    scale_d: 0.5\n    offset_d: 0\n    scale_w: 1.0\n    offset_w: 0\n"),
                 {"layer 'pool'", "it has no data input (input 0)"});
}

TEST(HostileGraph, ExternalDataInAMissingFileIsNamed) {
  ModelBuilder b = valid_conv();
  onnx::TensorProto& weight = *b.graph().mutable_initializer(0);
  weight.clear_raw_data();
  weight.set_data_location(onnx::TensorProto::EXTERNAL);
  auto* location = weight.add_external_data();
  location->set_key("location");
  location->set_value("missing.bin");
  expect_refused(b.model(), record_entry("c", kConvRecord),
                 {"initializer 'c.weight' of ONNX model '", "modified.onnx': external data file '",
                  "/missing.bin' does not exist"});
}

// ---- item 10: INT4 activations keep their zero point on the INT4 grid ----

ModelBuilder pool() {
  ModelBuilder b;
  b.input("x", {1, 1, 2, 2}).output("y", {});
  set_ints_attribute(b.layer("AveragePool", "pool", {"x"}, "y"), "kernel_shape", {2, 2});
  return b;
}

TEST(HostileGraph, Int4OffsetOutsideTheInt4RangeIsRefused) {
  expect_refused(pool().model(),
                 record_entry("pool", "    scale_d: 0.5\n    offset_d: 17\n    scale_w: 1.0\n    offset_w: 0\n"
                                      "    dst_type: \"INT4\"\n"),
                 {"record.txt", "layer 'pool'", "offset_d is 17; expected a value in [-8, 7] for INT4 activations"});
}

TEST(HostileGraph, Int4OffsetInsideTheInt4RangeIsAccepted) {
  const Saved saved =
      run_save(pool().model(),
               record_entry("pool", "    scale_d: 0.5\n    offset_d: 7\n    scale_w: 1.0\n    offset_w: 0\n"
                                    "    dst_type: \"INT4\"\n"),
               fresh_dir());
  EXPECT_EQ(find_attribute(node_named(saved.deploy, "pool.quant"), "dst_type")->s(), "INT4");
}

}  // namespace
}  // namespace amct::test
