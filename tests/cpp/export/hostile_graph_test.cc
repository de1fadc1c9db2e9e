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

}  // namespace
}  // namespace amct::test
