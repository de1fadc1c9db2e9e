#include "amct/layer_kind.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "amct/layers.h"

namespace amct {
namespace {

TEST(LayerKind, EveryModuleKindExportsToKnownOps) {
  for (const ModuleKind& kind : module_kinds()) {
    ASSERT_FALSE(kind.op_types.empty()) << kind.torch_type;
    for (std::string_view op : kind.op_types) EXPECT_NE(find_op_kind(op), nullptr) << kind.torch_type << " " << op;
  }
}

// AMCT's support matrix (docs/amct-reference.md#supported-layers), row by row.
TEST(LayerKind, CapabilitiesFollowAmctsMatrix) {
  std::set<std::string> channel_wise, int16, ada, dmq, int67, symmetric, fusable;
  for (const ModuleKind& kind : module_kinds()) {
    const std::string name(kind.torch_type);
    if (kind.channel_wise_default) channel_wise.insert(name);
    if (kind.int16_activations) int16.insert(name);
    if (kind.ada) ada.insert(name);
    if (kind.dmq) dmq.insert(name);
    if (kind.int6_int7_weights) int67.insert(name);
    if (kind.symmetric_only) symmetric.insert(name);
    if (kind.fusable_with_bn) fusable.insert(name);
  }
  EXPECT_EQ(quantizable_types(), (std::vector<std::string>{"Conv2d", "Conv3d", "Linear", "ConvTranspose2d",
                                                            "AvgPool2d", "Conv1d", "ConvTranspose1d", "GRU", "LSTM"}));
  EXPECT_EQ(channel_wise, (std::set<std::string>{"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                                                 "GRU", "LSTM"}));
  EXPECT_EQ(int16, (std::set<std::string>{"Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "GRU", "LSTM",
                                          "Linear"}));
  EXPECT_EQ(ada, (std::set<std::string>{"Conv2d", "ConvTranspose2d", "Linear"}));
  EXPECT_EQ(dmq, (std::set<std::string>{"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "Linear"}));
  EXPECT_EQ(int67, (std::set<std::string>{"Conv2d"}));
  EXPECT_EQ(symmetric, (std::set<std::string>{"Conv3d"}));
  EXPECT_EQ(fusable, (std::set<std::string>{"Conv1d", "Conv2d", "Conv3d"}));
}

TEST(LayerKind, OpRowsDescribeInputsAndLayouts) {
  const OpKind* conv = find_op_kind("Conv");
  EXPECT_EQ(conv->weight_input, 1);
  EXPECT_EQ(conv->bias_input, 2);
  EXPECT_EQ(conv->layout, WeightLayout::kOutFirst);
  EXPECT_TRUE(conv->fusable_with_bn);
  EXPECT_EQ(find_op_kind("ConvTranspose")->layout, WeightLayout::kDeconv);
  EXPECT_EQ(find_op_kind("MatMul")->bias_input, -1);  // a following Add, kept float
  EXPECT_EQ(find_op_kind("AveragePool")->weight_input, -1);
  EXPECT_EQ(find_op_kind("LSTM")->recurrent_input, 2);
  EXPECT_EQ(find_op_kind("Relu"), nullptr);
  EXPECT_EQ(find_module_kind("MyConv2d"), nullptr);  // AMCT matches class names exactly
  EXPECT_TRUE(has_weight(*find_module_kind("Linear")));
  EXPECT_FALSE(has_weight(*find_module_kind("AvgPool2d")));
  EXPECT_TRUE(is_recurrent(*find_module_kind("GRU")));
  EXPECT_TRUE(exports_to(*find_module_kind("Linear"), "MatMul"));
  EXPECT_FALSE(exports_to(*find_module_kind("Conv2d"), "ConvTranspose"));
}

}  // namespace
}  // namespace amct
