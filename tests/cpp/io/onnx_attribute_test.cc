// Attribute getters check the attribute's type: a malformed model gets an
// error naming the node and attribute, never a value read from the wrong field.
#include <gtest/gtest.h>

#include "amct/error.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

TEST(OnnxAttributes, WrongTypeNamesNodeAttributeAndExpectedType) {
  onnx::NodeProto node;
  node.set_name("deconv");
  node.set_op_type("ConvTranspose");
  set_float_attribute(node, "group", 2.0f);
  EXPECT_EQ(get_float_attribute(node, "group", 0.0f), 2.0f);
  try {
    get_int_attribute(node, "group", 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(std::string(e.what()),
              "node 'deconv' (ConvTranspose): attribute 'group' has type FLOAT; expected INT");
  }
  set_int_attribute(node, "mode", 3);
  EXPECT_THROW(get_string_attribute(node, "mode", ""), Error);
  EXPECT_THROW(get_ints_attribute(node, "mode"), Error);
  EXPECT_EQ(get_int_attribute(node, "absent", 7), 7);
  EXPECT_EQ(get_float_attribute(node, "absent", 0.5f), 0.5f);
}

}  // namespace
}  // namespace amct
