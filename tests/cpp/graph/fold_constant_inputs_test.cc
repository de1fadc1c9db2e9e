#include <gtest/gtest.h>

#include <cstring>

#include "amct/model_prep.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

onnx::NodeProto& add_node(onnx::GraphProto& g, const std::string& op, const std::string& name,
                          std::vector<std::string> inputs, std::vector<std::string> outputs) {
  auto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (auto& i : inputs) n->add_input(i);
  for (auto& o : outputs) n->add_output(o);
  return *n;
}

void set_ints(onnx::NodeProto& n, const std::string& name, std::vector<int64_t> values) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (auto v : values) a->add_ints(v);
}

void set_int(onnx::NodeProto& n, const std::string& name, int64_t value) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void set_tensor(onnx::NodeProto& n, const std::string& name, const onnx::TensorProto& t) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::TENSOR);
  *a->mutable_t() = t;
}

onnx::TensorProto int64_tensor(const std::string& name, std::vector<int64_t> dims, const std::vector<int64_t>& values) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::INT64);
  for (auto d : dims) t.add_dims(d);
  t.set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t)));
  return t;
}

// A Constant node holding an INT64 tensor.
void add_int_constant(onnx::GraphProto& g, const std::string& output, std::vector<int64_t> dims,
                      const std::vector<int64_t>& values) {
  set_tensor(add_node(g, "Constant", output + "_node", {}, {output}), "value", int64_tensor("", dims, values));
}

void add_float_constant(onnx::GraphProto& g, const std::string& output, std::vector<int64_t> dims,
                        const std::vector<float>& values) {
  set_tensor(add_node(g, "Constant", output + "_node", {}, {output}), "value", make_float_tensor("", dims, values));
}

// Declares a FLOAT tensor; a negative dim is symbolic.
void declare(onnx::ValueInfoProto* v, const std::string& name, std::vector<int64_t> dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  for (auto d : dims) {
    if (d < 0)
      t->mutable_shape()->add_dim()->set_dim_param("n");
    else
      t->mutable_shape()->add_dim()->set_dim_value(d);
  }
}

std::vector<float> floats_of(const onnx::GraphProto& g, const std::string& name) {
  const auto* t = find_initializer(g, name);
  return t ? tensor_to_floats(*t) : std::vector<float>{};
}

// The exporter's zero bias of a bias-less Conv3d: Shape(weight)[0:1] is
// concatenated with a constant, CastLike takes the type of the graph input.
TEST(FoldConstantInputs, RemovesTheExportersZeroBiasThroughConcat) {
  onnx::GraphProto g;
  declare(g.add_input(), "x", {-1, 1, 4, 4, 4});
  *g.add_initializer() = make_float_tensor("conv.weight", {2, 1, 1, 1, 1}, std::vector<float>{1, 2});
  auto& shape = add_node(g, "Shape", "s", {"conv.weight"}, {"val_0"});
  set_int(shape, "start", 0);
  set_int(shape, "end", 1);
  set_ints(add_node(g, "Constant", "c1", {}, {"val_1"}), "value_ints", {2});
  set_int(add_node(g, "Concat", "cat", {"val_0", "val_1"}, {"val_2"}), "axis", 0);
  add_float_constant(g, "val_3", {}, {0.0f});
  add_node(g, "CastLike", "cl", {"val_3", "x"}, {"val_4"});
  add_node(g, "Expand", "e", {"val_4", "val_2"}, {"val_5"});
  add_node(g, "Conv", "conv", {"x", "conv.weight", "val_5"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);
  EXPECT_EQ(g.node(0).input_size(), 2);
  EXPECT_EQ(g.initializer_size(), 1);  // the weight stays, nothing else is added
  EXPECT_EQ(floats_of(g, "conv.weight"), (std::vector<float>{1, 2}));
}

// The 1-D/2-D form (Shape -> Expand -> CastLike -> Expand) with a value that
// is not zero becomes a named bias initializer.
TEST(FoldConstantInputs, FoldsANonZeroExpandedBias) {
  onnx::GraphProto g;
  declare(g.add_input(), "x", {-1, 1, 4, 4});
  *g.add_initializer() = make_float_tensor("conv.weight", {3, 1, 1, 1}, std::vector<float>{1, 2, 3});
  set_int(add_node(g, "Shape", "s", {"conv.weight"}, {"val_0"}), "end", 1);
  set_ints(add_node(g, "Constant", "c1", {}, {"val_1"}), "value_ints", {1});
  add_node(g, "Expand", "e1", {"val_0", "val_1"}, {"val_2"});
  add_float_constant(g, "val_3", {}, {0.25f});
  add_node(g, "CastLike", "cl", {"val_3", "x"}, {"val_4"});
  add_node(g, "Expand", "e2", {"val_4", "val_2"}, {"val_5"});
  add_node(g, "Conv", "conv", {"x", "conv.weight", "val_5"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);
  ASSERT_EQ(g.node(0).input_size(), 3);
  EXPECT_EQ(g.node(0).input(2), "conv.bias");
  const auto* bias = find_initializer(g, "conv.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(tensor_dims(*bias), (std::vector<int64_t>{3}));
  EXPECT_EQ(tensor_to_floats(*bias), (std::vector<float>{0.25f, 0.25f, 0.25f}));
}

// A zero bias reached through Identity is a module's own (de-duplicated)
// parameter, not the exporter's computed zero: it stays, as an initializer.
TEST(FoldConstantInputs, KeepsAZeroBiasThatAliasesAParameter) {
  onnx::GraphProto g;
  *g.add_initializer() = make_float_tensor("conv.weight", {2, 1, 1, 1}, std::vector<float>{1, 2});
  *g.add_initializer() = make_float_tensor("zeros", {2}, std::vector<float>{0, 0});
  add_node(g, "Identity", "id", {"zeros"}, {"b"});
  add_node(g, "Conv", "conv", {"x", "conv.weight", "b"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);
  ASSERT_EQ(g.node(0).input_size(), 3);
  EXPECT_EQ(g.node(0).input(2), "conv.bias");
  EXPECT_EQ(floats_of(g, "conv.bias"), (std::vector<float>{0, 0}));
  EXPECT_EQ(find_initializer(g, "zeros"), nullptr);
}

TEST(FoldConstantInputs, FoldsAWeightComputedByTransposeAndReshape) {
  onnx::GraphProto g;
  *g.add_initializer() = make_float_tensor("p", {3, 2}, std::vector<float>{0, 1, 2, 3, 4, 5});
  set_ints(add_node(g, "Transpose", "t", {"p"}, {"pt"}), "perm", {1, 0});
  add_int_constant(g, "shape", {4}, {0, -1, 1, 1});  // 0 copies the dim
  add_node(g, "Reshape", "r", {"pt", "shape"}, {"w"});
  add_node(g, "Conv", "conv", {"x", "w"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);
  EXPECT_EQ(g.node(0).input(1), "conv.weight");
  const auto* w = find_initializer(g, "conv.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(tensor_dims(*w), (std::vector<int64_t>{2, 3, 1, 1}));
  EXPECT_EQ(tensor_to_floats(*w), (std::vector<float>{0, 2, 4, 1, 3, 5}));
  EXPECT_EQ(find_initializer(g, "p"), nullptr);  // only the folded sub-graph read it
  EXPECT_EQ(g.initializer_size(), 1);
}

// Integer arithmetic on shapes and indices, then a Cast to float.
TEST(FoldConstantInputs, EvaluatesIntegerSubGraphs) {
  onnx::GraphProto g;
  *g.add_initializer() = int64_tensor("v", {5}, {10, 20, 30, 40, 50});
  add_int_constant(g, "starts", {1}, {1});
  add_int_constant(g, "ends", {1}, {INT64_MAX});
  add_int_constant(g, "axes", {1}, {0});
  add_int_constant(g, "steps", {1}, {2});
  add_node(g, "Slice", "sl", {"v", "starts", "ends", "axes", "steps"}, {"a"});  // [20, 40]
  add_int_constant(g, "two", {}, {2});
  add_node(g, "Mul", "mul", {"a", "two"}, {"b"});                               // [40, 80]
  add_int_constant(g, "three", {1}, {3});
  add_node(g, "Div", "div", {"b", "three"}, {"c"});                             // [13, 26]
  add_int_constant(g, "idx", {}, {-1});
  add_node(g, "Gather", "ga", {"v", "idx"}, {"last"});                          // 50
  add_node(g, "Sub", "sub", {"c", "last"}, {"d"});                              // [-37, -24]
  add_node(g, "Neg", "neg", {"d"}, {"e"});                                      // [37, 24]
  add_int_constant(g, "zero", {1}, {0});
  add_node(g, "Unsqueeze", "us", {"e", "zero"}, {"f"});                         // [[37, 24]]
  add_node(g, "Squeeze", "sq", {"f", "zero"}, {"h"});                           // [37, 24]
  auto& cast32 = add_node(g, "Cast", "c32", {"h"}, {"i32"});
  set_int(cast32, "to", onnx::TensorProto::INT32);
  auto& cast = add_node(g, "Cast", "cf", {"i32"}, {"bias"});
  set_int(cast, "to", onnx::TensorProto::FLOAT);
  *g.add_initializer() = make_float_tensor("fc.weight", {2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  add_node(g, "Gemm", "fc", {"x", "fc.weight", "bias"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);
  EXPECT_EQ(floats_of(g, g.node(0).input(2)), (std::vector<float>{37, 24}));
  EXPECT_EQ(find_initializer(g, "v"), nullptr);
}

// Slice with a negative step, a step far beyond the dim and open ends.
TEST(FoldConstantInputs, SlicesLikeOnnx) {
  onnx::GraphProto g;
  std::vector<float> values(16);
  for (int i = 0; i < 16; ++i) values[static_cast<size_t>(i)] = static_cast<float>(i);
  *g.add_initializer() = make_float_tensor("p", {4, 4}, values);
  add_int_constant(g, "starts", {2}, {1, -1});
  add_int_constant(g, "ends", {2}, {INT64_MAX, INT64_MIN});
  add_int_constant(g, "axes", {2}, {0, -1});
  add_int_constant(g, "steps", {2}, {int64_t{1} << 62, -2});
  add_node(g, "Slice", "sl", {"p", "starts", "ends", "axes", "steps"}, {"row"});  // [[7, 5]]
  set_ints(add_node(g, "Squeeze", "sq", {"row"}, {"bias"}), "axes", {0});        // opset-11 attribute form
  *g.add_initializer() = make_float_tensor("fc.weight", {2, 4}, std::vector<float>(8, 1.0f));
  add_node(g, "Gemm", "fc", {"x", "fc.weight", "bias"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);
  EXPECT_EQ(floats_of(g, "fc.bias"), (std::vector<float>{7, 5}));
}

// BatchNorm parameters as the exporter writes them for affine=False (Shape of
// an activation with a symbolic batch dim), plus Sqrt/Reciprocal, Sub with
// broadcasting and FLOAT16 arithmetic.
TEST(FoldConstantInputs, EvaluatesFloatSubGraphsOfBatchNorm) {
  onnx::GraphProto g;
  declare(g.add_input(), "x", {-1, 2, 4, 4});
  add_float_constant(g, "sq", {2}, {4, 16});
  add_node(g, "Sqrt", "sqrt", {"sq"}, {"root"});
  add_node(g, "Reciprocal", "rec", {"root"}, {"scale"});  // [0.5, 0.25]
  auto& shape = add_node(g, "Shape", "s", {"x"}, {"channels"});
  set_int(shape, "start", 1);
  set_int(shape, "end", 2);
  set_tensor(add_node(g, "ConstantOfShape", "cos", {"channels"}, {"shift"}), "value",
             make_float_tensor("", {1}, std::vector<float>{1.5f}));
  auto& values = add_node(g, "Constant", "cv", {}, {"m0"});
  auto* floats = values.add_attribute();
  floats->set_name("value_floats");
  floats->set_type(onnx::AttributeProto::FLOATS);
  floats->add_floats(1);
  floats->add_floats(2);
  auto& half = add_node(g, "Constant", "ch", {}, {"half"});
  auto* f = half.add_attribute();
  f->set_name("value_float");
  f->set_type(onnx::AttributeProto::FLOAT);
  f->set_f(0.5f);
  add_node(g, "Sub", "sub", {"m0", "half"}, {"mean"});  // [0.5, 1.5]
  onnx::TensorProto h;  // FLOAT16 [1/3, 3] as typed int32 bits
  h.set_data_type(onnx::TensorProto::FLOAT16);
  h.add_dims(2);
  h.add_int32_data(0x3555);  // 0.33325195
  h.add_int32_data(0x4200);  // 3
  set_tensor(add_node(g, "Constant", "c16", {}, {"v16"}), "value", h);
  add_node(g, "Mul", "mul16", {"v16", "v16"}, {"sq16"});  // [0.111083984 in half, 9]
  auto& to_float = add_node(g, "Cast", "cf", {"sq16"}, {"var"});
  set_int(to_float, "to", onnx::TensorProto::FLOAT);
  add_node(g, "BatchNormalization", "bn", {"x", "scale", "shift", "mean", "var"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);
  const auto& bn = g.node(0);
  EXPECT_EQ(bn.input(1), "bn.weight");
  EXPECT_EQ(bn.input(2), "bn.bias");
  EXPECT_EQ(bn.input(3), "bn.running_mean");
  EXPECT_EQ(bn.input(4), "bn.running_var");
  EXPECT_EQ(floats_of(g, "bn.weight"), (std::vector<float>{0.5f, 0.25f}));
  EXPECT_EQ(floats_of(g, "bn.bias"), (std::vector<float>{1.5f, 1.5f}));
  EXPECT_EQ(floats_of(g, "bn.running_mean"), (std::vector<float>{0.5f, 1.5f}));
  // 0.33325195^2 = 0.1110567, rounded to half precision: 0.111083984.
  EXPECT_EQ(floats_of(g, "bn.running_var"), (std::vector<float>{0.111083984f, 9.0f}));
}

// A weight cast to FLOAT16 is stored as FLOAT16, rounded as the runtime would.
TEST(FoldConstantInputs, KeepsTheComputedType) {
  onnx::GraphProto g;
  *g.add_initializer() = make_float_tensor("p", {1, 2}, std::vector<float>{1.0f / 3.0f, -2.0f});
  auto& cast = add_node(g, "Cast", "c", {"p"}, {"w16"});
  set_int(cast, "to", onnx::TensorProto::FLOAT16);
  add_node(g, "MatMul", "fc", {"x", "w16"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  const auto* w = find_initializer(g, "fc.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->data_type(), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(tensor_to_floats(*w), (std::vector<float>{0.33325195f, -2.0f}));
}

TEST(FoldConstantInputs, SharedComputedWeightBecomesOneInitializer) {
  onnx::GraphProto g;
  *g.add_initializer() = make_float_tensor("p", {2, 2}, std::vector<float>{1, 2, 3, 4});
  add_node(g, "Transpose", "t", {"p"}, {"pt"});
  add_node(g, "MatMul", "a", {"x", "pt"}, {"ya"});
  add_node(g, "MatMul", "b", {"ya", "pt"}, {"y"});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 2);
  EXPECT_EQ(g.node(0).input(1), "a.weight");
  EXPECT_EQ(g.node(1).input(1), "a.weight");
  EXPECT_EQ(floats_of(g, "a.weight"), (std::vector<float>{1, 3, 2, 4}));
  EXPECT_EQ(g.initializer_size(), 1);
}

TEST(FoldConstantInputs, LeavesNonConstantInputsAlone) {
  onnx::GraphProto g;
  declare(g.add_input(), "x", {-1, 2, -1});
  *g.add_initializer() = make_float_tensor("w", {2, 2, 1}, std::vector<float>{1, 2, 3, 4});
  add_float_constant(g, "one", {}, {1.0f});
  add_node(g, "ReduceMean", "rm", {"x"}, {"m"});
  add_node(g, "Add", "add", {"m", "one"}, {"b"});  // depends on the input's values
  add_node(g, "Conv", "conv", {"x", "w", "b"}, {"c"});
  auto& shape = add_node(g, "Shape", "s", {"x"}, {"sx"});  // the last dim is symbolic
  set_int(shape, "start", 2);
  add_node(g, "Cast", "cs", {"sx"}, {"sf"});
  add_node(g, "Expand", "e", {"one", "sf"}, {"b2"});
  add_node(g, "Conv", "conv2", {"c", "w", "b2"}, {"y"});
  g.add_output()->set_name("y");
  const std::string before = g.SerializeAsString();
  fold_constant_inputs(g);
  EXPECT_EQ(g.SerializeAsString(), before);
}

TEST(FoldConstantInputs, LeavesMalformedAndOversizedTensorsAlone) {
  onnx::GraphProto g;
  // raw_data of 3 floats for dims [2, 2]
  onnx::TensorProto short_raw = make_float_tensor("p", {3}, std::vector<float>{1, 2, 3});
  short_raw.set_dims(0, 2);
  short_raw.add_dims(2);
  *g.add_initializer() = short_raw;
  add_node(g, "Transpose", "t", {"p"}, {"w"});
  add_node(g, "Conv", "conv", {"x", "w"}, {"c"});
  // typed int64 data of 1 value for dims [2]
  onnx::TensorProto short_typed;
  short_typed.set_data_type(onnx::TensorProto::INT64);
  short_typed.add_dims(2);
  short_typed.add_int64_data(4);
  set_tensor(add_node(g, "Constant", "cs", {}, {"shape"}), "value", short_typed);
  add_float_constant(g, "one", {}, {1.0f});
  add_node(g, "Expand", "e1", {"one", "shape"}, {"b1"});
  add_node(g, "Conv", "conv1", {"c", "w", "b1"}, {"c1"});
  // 2^62 * 4 elements: the product overflows int64
  add_int_constant(g, "huge", {2}, {int64_t{1} << 62, 4});
  add_node(g, "ConstantOfShape", "cos", {"huge"}, {"b2"});
  add_node(g, "Conv", "conv2", {"c1", "w", "b2"}, {"c2"});
  // 2^40 elements: within int64 but over the size bound
  add_int_constant(g, "big", {1}, {int64_t{1} << 40});
  add_node(g, "Expand", "e3", {"one", "big"}, {"b3"});
  add_node(g, "Conv", "conv3", {"c2", "w", "b3"}, {"c3"});
  // a float beyond the int64 range cast to INT64
  add_float_constant(g, "too_big", {1}, {1e19f});
  set_int(add_node(g, "Cast", "ct", {"too_big"}, {"big_shape"}), "to", onnx::TensorProto::INT64);
  add_node(g, "Expand", "e4", {"one", "big_shape"}, {"b4"});
  add_node(g, "Conv", "conv3b", {"c3", "w", "b4"}, {"c3b"});
  // a cycle: nothing on it is constant, and evaluation terminates
  add_node(g, "Identity", "i1", {"l2"}, {"l1"});
  add_node(g, "Add", "i2", {"l1", "one"}, {"l2"});
  add_node(g, "Conv", "conv4", {"c3b", "w", "l1"}, {"c4"});
  // a Shape of an initializer with a negative dim
  onnx::TensorProto negative = make_float_tensor("n", {1}, std::vector<float>{1});
  negative.set_dims(0, -1);
  *g.add_initializer() = negative;
  add_node(g, "Shape", "sn", {"n"}, {"nshape"});
  add_node(g, "Expand", "e5", {"one", "nshape"}, {"b5"});
  add_node(g, "Conv", "conv5", {"c4", "w", "b5"}, {"y"});
  g.add_output()->set_name("y");
  const std::string before = g.SerializeAsString();
  fold_constant_inputs(g);
  EXPECT_EQ(g.SerializeAsString(), before);
}

// Evaluation has no depth limit and uses no recursion: a long chain folds.
TEST(FoldConstantInputs, FoldsLongChains) {
  onnx::GraphProto g;
  *g.add_initializer() = make_float_tensor("p", {2}, std::vector<float>{1, 2});
  add_float_constant(g, "one", {}, {1.0f});
  std::string last = "p";
  for (int i = 0; i < 1000; ++i) {
    const std::string out = "t" + std::to_string(i);
    if (i % 2)
      add_node(g, "Identity", out, {last}, {out});
    else
      add_node(g, "Add", out, {last, "one"}, {out});
    last = out;
  }
  add_node(g, "Gemm", "fc", {"x", "w", last}, {"y"});
  *g.add_initializer() = make_float_tensor("w", {2, 2}, std::vector<float>{1, 0, 0, 1});
  g.add_output()->set_name("y");
  fold_constant_inputs(g);
  ASSERT_EQ(g.node_size(), 1);
  EXPECT_EQ(floats_of(g, "fc.bias"), (std::vector<float>{501, 502}));
}

}  // namespace
}  // namespace amct
