// create_quant_config from a simple config (docs/amct-reference.md#simple-config, #simple-config-example).
#include <gtest/gtest.h>

#include "amct/config.h"
#include "amct/error.h"
#include "config_test_model.h"

namespace amct {
namespace {

using namespace config_test;

QuantConfig from_simple(const std::string& text, const ModelInfo& model = extended_model()) {
  return make_config_from_simple(write_temp("simple.cfg", text), model);
}

// The error message without the "simple config '<path>': " prefix.
std::string simple_error(const std::string& text, const ModelInfo& model = extended_model()) {
  const std::string path = write_temp("simple.cfg", text);
  const std::string message = error_of([&] { make_config_from_simple(path, model); });
  const std::string prefix = "simple config '" + path + "': ";
  if (message.rfind(prefix, 0) != 0) return "unexpected message: " + message;
  return message.substr(prefix.size());
}

TEST(ConfigSimple, SpecExampleReproducesAmctOutput) {
  const QuantConfig config = make_config_from_simple(data_path("spec_3_5_simple.cfg"), spec_model());
  EXPECT_EQ(config_to_json(config), read_text(data_path("spec_3_3_from_simple.json")));
}

TEST(ConfigSimple, GlobalsAndDefaults) {
  const QuantConfig empty = from_simple("", spec_model());
  expect_same_config(empty, make_default_config(spec_model(), {}, 1, true));

  const QuantConfig config = from_simple(R"(
    batch_num: 5 activation_offset: false do_fusion: false
    fakequant_precision_mode: FORCE_FP16_QUANT
    skip_fusion_layers: "conv1" skip_fusion_layers: "conv3d"
    skip_layer_types: "Linear")");
  EXPECT_EQ(config.batch_num, 5);
  EXPECT_FALSE(config.activation_offset);
  EXPECT_FALSE(config.do_fusion);
  EXPECT_EQ(config.fakequant_precision_mode, "FORCE_FP16_QUANT");
  EXPECT_EQ(config.skip_fusion_layers, (std::vector<std::string>{"conv1", "conv3d"}));
  EXPECT_FALSE(config.find_layer("fc")->quant_enable);
  EXPECT_FALSE(config.find_layer("fc_nobias")->quant_enable);
  EXPECT_TRUE(config.find_layer("conv1")->quant_enable);
  EXPECT_FALSE(config.find_layer("conv1")->activation.asymmetric);
  EXPECT_EQ(config.find_layer("reflect_conv"), nullptr);
}

TEST(ConfigSimple, TextFormatMergeSemantics) {
  // Python's text_format.Merge: a repeated singular field keeps its last
  // value, and the last member of a oneof wins.
  const QuantConfig config = from_simple(R"(
    batch_num: 2 batch_num: 3
    common_config { ifmr_quantize { search_step: 0.05 } hfmg_quantize { num_of_bins: 8192 } })");
  EXPECT_EQ(config.batch_num, 3);
  EXPECT_EQ(config.find_layer("conv1")->activation.act_algo, "hfmg");
  EXPECT_EQ(config.find_layer("conv1")->activation.num_of_bins, 8192);
}

TEST(ConfigSimple, OverridesReplaceInsteadOfMerging) {
  const QuantConfig config = from_simple(R"(
    common_config { hfmg_quantize { num_of_bins: 2048 } dmq_balancer { migration_strength: 0.4 }
                    arq_quantize { quant_bits: 4 } }
    override_layer_types { layer_type: "ConvTranspose2d"
                           calibration_config { ifmr_quantize { max_percentile: 0.99 } } }
    override_layer_configs { layer_name: "deconv" calibration_config { arq_quantize { channel_wise: false } } })");
  const LayerQuantConfig* deconv = config.find_layer("deconv");
  EXPECT_EQ(deconv->activation.act_algo, "ifmr");     // not the type override's nor the common HFMG
  EXPECT_EQ(deconv->activation.max_percentile, 0.999999);
  EXPECT_FALSE(deconv->dmq_balancer_param.has_value());  // no DMQ from the common config
  EXPECT_EQ(deconv->weight.num_bits, 8);
  EXPECT_FALSE(deconv->weight.channel_wise);
  const LayerQuantConfig* fc = config.find_layer("fc");
  EXPECT_EQ(fc->activation.act_algo, "hfmg");
  EXPECT_EQ(fc->dmq_balancer_param, 0.4);
  EXPECT_EQ(fc->weight.num_bits, 4);
}

TEST(ConfigSimple, FloatsGoThroughShortestFloat32Text) {
  const QuantConfig config = from_simple(R"(
    common_config { ifmr_quantize { search_range_start: 0.6 search_range_end: 1.1 search_step: 0.03
                                    max_percentile: 0.9999 }
                    dmq_balancer { migration_strength: 0.7 }
                    ada_quantize { reg_param: 0.03 warm_start: 0.3 beta_range_start: 10.5 num_iteration: 7 } })");
  const LayerQuantConfig* conv1 = config.find_layer("conv1");
  EXPECT_EQ(conv1->activation.search_range_start, 0.6);
  EXPECT_EQ(conv1->activation.search_range_end, 1.1);
  EXPECT_EQ(conv1->activation.search_step, 0.03);
  EXPECT_EQ(conv1->activation.max_percentile, 0.9999);
  EXPECT_EQ(conv1->dmq_balancer_param, 0.7);
  EXPECT_EQ(conv1->weight.wts_algo, "ada_quantize");
  EXPECT_EQ(conv1->weight.reg_param, 0.03);
  EXPECT_EQ(conv1->weight.warm_start, 0.3);
  EXPECT_EQ(conv1->weight.beta_range_start, 10.5);
  EXPECT_EQ(conv1->weight.beta_range_end, 2.0);
  EXPECT_EQ(conv1->weight.num_iteration, 7);
}

TEST(ConfigSimple, AsymmetricResolution) {
  const QuantConfig config = from_simple(R"(
    activation_offset: true
    common_config { hfmg_quantize { asymmetric: false } }
    override_layer_types { layer_type: "Linear" calibration_config { ifmr_quantize { } } }
    override_layer_types { layer_type: "AvgPool2d" calibration_config { hfmg_quantize { num_of_bins: 1024 } } }
    override_layer_configs { layer_name: "deconv" calibration_config { hfmg_quantize { asymmetric: true } } }
    override_layer_configs { layer_name: "dw" calibration_config { arq_quantize { } } })");
  EXPECT_FALSE(config.find_layer("conv1")->activation.asymmetric);   // common sets it
  EXPECT_FALSE(config.find_layer("pool")->activation.asymmetric);    // same algorithm as common
  EXPECT_TRUE(config.find_layer("fc")->activation.asymmetric);       // IFMR: activation_offset
  EXPECT_TRUE(config.find_layer("dw")->activation.asymmetric);       // default IFMR: activation_offset
  EXPECT_TRUE(config.find_layer("deconv")->activation.asymmetric);   // its own setting
  EXPECT_FALSE(config.find_layer("conv3d")->activation.asymmetric);  // symmetric only
}

TEST(ConfigSimple, CommonConfigIsAdjustedPerLayer) {
  const QuantConfig config = from_simple(R"(
    common_config { ifmr_quantize { dst_type: INT16 asymmetric: true } dmq_balancer { }
                    arq_quantize { quant_bits: 6 } })");
  EXPECT_EQ(config.find_layer("conv1")->activation.num_bits, 16);
  EXPECT_EQ(config.find_layer("fc")->activation.num_bits, 16);
  EXPECT_EQ(config.find_layer("fc_nobias")->activation.num_bits, 8);
  EXPECT_EQ(config.find_layer("pool")->activation.num_bits, 8);
  EXPECT_EQ(config.find_layer("conv3d")->activation.num_bits, 8);
  EXPECT_FALSE(config.find_layer("conv3d")->activation.asymmetric);
  EXPECT_EQ(config.find_layer("conv1")->dmq_balancer_param, 0.5);
  EXPECT_FALSE(config.find_layer("pool")->dmq_balancer_param.has_value());
  EXPECT_EQ(config.find_layer("conv1")->weight.num_bits, 6);
  EXPECT_EQ(config.find_layer("dw")->weight.num_bits, 6);
  EXPECT_EQ(config.find_layer("deconv")->weight.num_bits, 8);
  EXPECT_EQ(config.find_layer("fc")->weight.num_bits, 8);
}

TEST(ConfigSimple, Int4NeedsAnUngroupedEvenCin) {
  const QuantConfig config = from_simple(R"(
    common_config { arq_quantize { quant_bits: 4 } }
    override_layer_configs { layer_name: "dw" calibration_config { arq_quantize { quant_bits: 4 } } })");
  EXPECT_EQ(config.find_layer("conv1")->weight.num_bits, 8);  // Cin 3
  EXPECT_EQ(config.find_layer("dw")->weight.num_bits, 8);     // groups 8
  EXPECT_EQ(config.find_layer("deconv")->weight.num_bits, 4);
  EXPECT_EQ(config.find_layer("fc")->weight.num_bits, 4);
}

TEST(ConfigSimple, CommonAdaIsDroppedWhereUnsupported) {
  const QuantConfig config = from_simple("common_config { ada_quantize { } }");
  EXPECT_EQ(config.find_layer("conv1")->weight.wts_algo, "ada_quantize");
  EXPECT_EQ(config.find_layer("fc")->weight.wts_algo, "ada_quantize");
  EXPECT_EQ(config.find_layer("deconv")->weight.wts_algo, "ada_quantize");
  EXPECT_EQ(config.find_layer("conv3d")->weight.wts_algo, "arq_quantize");
  EXPECT_TRUE(config.find_layer("conv3d")->weight.channel_wise);
  EXPECT_EQ(config.find_layer("pool")->weight.wts_algo, "arq_quantize");
  EXPECT_NE(config_to_json(config).find("\"beta_range\":[\n                20.0,\n                2.0\n"),
            std::string::npos);
}

TEST(ConfigSimple, OverrideOfUnsupportedModuleIsIgnored) {
  const QuantConfig config = from_simple(R"(
    override_layer_configs { layer_name: "bn1" calibration_config { hfmg_quantize { } } })");
  EXPECT_EQ(config.find_layer("bn1"), nullptr);
}

struct BadSimple {
  const char* text;
  const char* message;
};

void PrintTo(const BadSimple& bad, std::ostream* out) { *out << bad.text; }

class ConfigSimpleErrors : public testing::TestWithParam<BadSimple> {};

TEST_P(ConfigSimpleErrors, NamesLayerTypeOrField) { EXPECT_EQ(simple_error(GetParam().text), GetParam().message); }

INSTANTIATE_TEST_SUITE_P(
    Simple, ConfigSimpleErrors,
    testing::Values(
        BadSimple{R"(skip_layers: "dw" skip_layers: "dw")",
                  "Please delete repeated items in skip_layers, repeated items are ['dw']"},
        BadSimple{R"(skip_layer_types: "Linear" skip_layer_types: "Linear")",
                  "Please delete repeated items in skip_layer_types, repeated items are ['Linear']"},
        BadSimple{R"(skip_fusion_layers: "conv1" skip_fusion_layers: "conv1")",
                  "Please delete repeated items in skip_fusion_layers, repeated items are ['conv1']"},
        BadSimple{R"(skip_layers: "ghost")", "Layer ghost does not exist in the graph."},
        BadSimple{R"(skip_layers: "relu")", "Layer relu does not support quantization."},
        BadSimple{R"(skip_layer_types: "ReLU")", "Layer type ReLU does not support quantize."},
        BadSimple{R"(skip_layer_types: ["Conv2d", "Conv3d", "Linear", "ConvTranspose2d", "AvgPool2d", "Conv1d",
                                        "ConvTranspose1d", "GRU", "LSTM"])",
                  "Except skip_types, no type need to quantize."},
        BadSimple{R"(skip_layer_types: ["Conv2d", "Linear", "ConvTranspose2d"] skip_layers: ["pool", "conv3d"])",
                  "Except skip_layers or skip_types, no layer need to quantize."},
        BadSimple{R"(batch_num: 0)", "The batch_num must be greater than zero."},
        BadSimple{R"(skip_fusion_layers: "fc")",
                  "Skip fusion layer \"fc\" is a Linear, but only ['Conv1d', 'Conv2d', 'Conv3d'] can be fused"},
        BadSimple{R"(skip_fusion_layers: "ghost")", "Layer \"ghost\" in skip_fusion_layers does not exist in the graph."},
        BadSimple{"common_config { arq_quantize { channel_wise: true } }",
                  "The channel_wise must be False for layer type AvgPool2d in layer pool"},
        BadSimple{"common_config { arq_quantize { quant_bits: 5 } }",
                  "weight num_bits 5 is not in [4, 6, 7, 8] in layer conv1"},
        BadSimple{"common_config { hfmg_quantize { num_of_bins: 100 } }",
                  "num_of_bins 100 must be in [1024, 2048, 4096, 8192] in layer conv1"},
        BadSimple{"common_config { hfmg_quantize { num_of_bins: 4294967295 } }",
                  "The num_of_bins 4294967295 is out of range in layer conv1"},
        BadSimple{"common_config { dmq_balancer { migration_strength: 0.1 } }",
                  "The dmq_balancer_param must be in range [0.2, 0.8], but is 0.1 in layer conv1"},
        BadSimple{"common_config { ifmr_quantize { search_range_start: 1.3 search_range_end: 0.7 } }",
                  "search_range[0] must be less than search_range[1] in layer conv1"},
        BadSimple{"common_config { ifmr_quantize { search_step: nan } }",
                  "The search_step must be greater than zero in layer conv1"},
        BadSimple{"common_config { ada_quantize { warm_start: 1.5 } }",
                  "warm_start must be less than 1 and larger than 0 in layer conv1"},
        BadSimple{R"(override_layer_configs { layer_name: "ghost" calibration_config { } })",
                  "Layer ghost does not exist in the graph."},
        BadSimple{R"(override_layer_configs { layer_name: "fc" calibration_config { } }
                     override_layer_configs { layer_name: "fc" calibration_config { } })",
                  "Please delete repeated items in override_layer_configs, repeated items are ['fc']"},
        BadSimple{R"(override_layer_types { layer_type: "Linear" calibration_config { } }
                     override_layer_types { layer_type: "Linear" calibration_config { } })",
                  "Please delete repeated items in override_layer_types, repeated items are ['Linear']"},
        BadSimple{R"(override_layer_types { layer_type: "BatchNorm2d" calibration_config { } })",
                  "Layer type BatchNorm2d does not support quantize."},
        BadSimple{R"(override_layer_types { layer_type: "AvgPool2d" calibration_config { dmq_balancer { } } })",
                  "dmq_balancer not support for AvgPool2d type"},
        BadSimple{R"(override_layer_configs { layer_name: "pool" calibration_config { dmq_balancer { } } })",
                  "dmq_balancer not support for pool layer"},
        BadSimple{R"(override_layer_configs { layer_name: "bn1" calibration_config { dmq_balancer { } } })",
                  "dmq_balancer not support for bn1 layer"},
        BadSimple{R"(override_layer_types { layer_type: "AvgPool2d"
                                            calibration_config { hfmg_quantize { dst_type: INT16 } } })",
                  "int16_quantizable not support for AvgPool2d type"},
        BadSimple{R"(override_layer_configs { layer_name: "fc_nobias"
                                              calibration_config { ifmr_quantize { dst_type: INT16 } } })",
                  "int16_quantizable not support for fc_nobias layer"},
        BadSimple{R"(override_layer_types { layer_type: "Linear" calibration_config { arq_quantize { quant_bits: 6 } } })",
                  "quant_bits 6 not support for Linear type"},
        BadSimple{R"(override_layer_configs { layer_name: "deconv" calibration_config { arq_quantize { quant_bits: 7 } } })",
                  "quant_bits 7 not support for deconv layer"},
        BadSimple{R"(override_layer_types { layer_type: "Conv3d" calibration_config { ada_quantize { } } })",
                  "ada_quantizable not support for Conv3d type"},
        BadSimple{R"(override_layer_configs { layer_name: "pool" calibration_config { ada_quantize { } } })",
                  "ada_quantizable not support for pool layer"},
        BadSimple{R"(override_layer_types { layer_type: "Conv3d"
                                            calibration_config { ifmr_quantize { asymmetric: true } } })",
                  "Layer type Conv3d can only set asymmetric be False "},
        BadSimple{R"(override_layer_configs { layer_name: "conv3d"
                                              calibration_config { hfmg_quantize { asymmetric: true } } })",
                  "Layer conv3d can only set asymmetric be False "},
        BadSimple{R"(override_layer_types { layer_type: "Linear" calibration_config { arq_quantize { channel_wise: true } } })",
                  "channel_wise can only be False for Linear type"},
        BadSimple{R"(override_layer_configs { layer_name: "pool"
                                              calibration_config { arq_quantize { channel_wise: true } } })",
                  "channel_wise can only be False for pool layer"},
        BadSimple{R"(override_layer_configs { layer_name: "fc"
                                              calibration_config { ada_quantize { channel_wise: true } } })",
                  "The channel_wise must be False for layer type Linear in layer fc"}));

TEST(ConfigSimple, SyntaxErrorNamesFileLineAndColumn) {
  const std::string path = write_temp("syntax.cfg", "batch_num: 2\ncommon_config { arq_quantize { bits: 4 } }\n");
  const std::string message = error_of([&] { make_config_from_simple(path, spec_model()); });
  EXPECT_NE(message.find("simple config '" + path + "'"), std::string::npos) << message;
  EXPECT_NE(message.find("line 2, column 36"), std::string::npos) << message;
  EXPECT_NE(message.find("bits"), std::string::npos) << message;
}

TEST(ConfigSimple, MissingRequiredFieldIsReported) {
  const std::string message = simple_error(R"(override_layer_types { layer_type: "Linear" })");
  EXPECT_NE(message.find("override_layer_types[0].calibration_config"), std::string::npos) << message;
}

TEST(ConfigSimple, NothingSupportedAndMissingFile) {
  ModelInfo nothing_supported;
  add_module(nothing_supported, "bn", "BatchNorm2d");
  EXPECT_EQ(simple_error("", nothing_supported), "No layer support quantization in the graph.");
  ErrorCode code{};
  const std::string missing = error_of([] { make_config_from_simple("/nonexistent/simple.cfg", spec_model()); }, &code);
  EXPECT_NE(missing.find("/nonexistent/simple.cfg"), std::string::npos) << missing;
  EXPECT_EQ(code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace amct
