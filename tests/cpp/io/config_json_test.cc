// Config JSON: creation from parameters, the writer's byte layout, and the
// validating reader.
#include <gtest/gtest.h>

#include "amct/config.h"
#include "amct/error.h"
#include "config_test_model.h"

namespace amct {
namespace {

using namespace config_test;

// ---- make_default_config ---------------------------------------------------

TEST(ConfigDefault, MatchesGoldenForSpecModel) {
  const QuantConfig config = make_default_config(spec_model(), {}, 2, true);
  EXPECT_EQ(config_to_json(config), read_text(data_path("default_batch2.json")));
}

TEST(ConfigDefault, SkippedLayersStayWithQuantDisabled) {
  const QuantConfig config = make_default_config(spec_model(), {"dw"}, 1, false);
  ASSERT_EQ(config.layers.size(), 5u);
  EXPECT_FALSE(config.find_layer("dw")->quant_enable);
  EXPECT_TRUE(config.find_layer("conv1")->quant_enable);
  for (const auto& layer : config.layers) EXPECT_FALSE(layer.activation.asymmetric) << layer.name;
}

TEST(ConfigDefault, OnlySupportedLayersAndSymmetricConv3d) {
  const QuantConfig config = make_default_config(extended_model(), {"reflect_conv"}, 1, true);
  EXPECT_EQ(config.find_layer("reflect_conv"), nullptr);
  ASSERT_NE(config.find_layer("conv3d"), nullptr);
  EXPECT_FALSE(config.find_layer("conv3d")->activation.asymmetric);
  EXPECT_TRUE(config.find_layer("conv3d")->weight.channel_wise);
  EXPECT_TRUE(config.find_layer("fc_nobias")->activation.asymmetric);
  EXPECT_FALSE(config.find_layer("fc_nobias")->weight.channel_wise);
  EXPECT_FALSE(config.find_layer("pool")->weight.channel_wise);
  EXPECT_TRUE(config.find_layer("deconv")->weight.channel_wise);
  std::vector<std::string> names;
  for (const auto& layer : config.layers) names.push_back(layer.name);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

TEST(ConfigDefault, RejectsBadParameters) {
  const ModelInfo model = spec_model();
  EXPECT_EQ(error_of([&] { make_default_config(model, {"dw", "fc", "dw"}, 1, true); }),
            "Please delete repeated items in skip_layers, repeated items are ['dw']");
  EXPECT_EQ(error_of([&] { make_default_config(model, {"nope"}, 1, true); }), "Layer nope does not exist in the graph.");
  EXPECT_EQ(error_of([&] { make_default_config(model, {"bn1"}, 1, true); }), "Layer bn1 does not support quantization.");
  EXPECT_EQ(error_of([&] { make_default_config(model, {"conv1", "dw", "deconv", "pool", "fc"}, 1, true); }),
            "Except skip_layers, no layer needs to quantize.");
  EXPECT_EQ(error_of([&] { make_default_config(model, {}, 0, true); }), "The batch_num must be greater than zero.");

  ModelInfo nothing_supported;
  add_module(nothing_supported, "bn", "BatchNorm2d");
  add_layer(nothing_supported, "conv", "Conv2d", 4, 1, true, false);
  EXPECT_EQ(error_of([&] { make_default_config(nothing_supported, {}, 1, true); }),
            "No layer support quantization in the graph.");

  ModelInfo clashing = spec_model();
  add_layer(clashing, "batch_num", "Conv2d", 4);
  EXPECT_EQ(error_of([&] { make_default_config(clashing, {}, 1, true); }),
            "batch_num is a global parameter, can not be a layer name");
}

TEST(ConfigDefault, AcceptsSkippingAnUnsupportedLayerOfQuantizableType) {
  EXPECT_NO_THROW(make_default_config(extended_model(), {"reflect_conv"}, 1, true));
}

// ---- writer and round trips -------------------------------------------------

TEST(ConfigJson, GoldenFilesRoundTripByteForByte) {
  for (const char* name : {"default_batch2.json", "spec_3_3_from_simple.json", "all_fields.json"}) {
    SCOPED_TRACE(name);
    const std::string text = read_text(data_path(name));
    const QuantConfig parsed = parse_config_file(data_path(name), spec_model());
    EXPECT_EQ(config_to_json(parsed), text);
  }
}

TEST(ConfigJson, ParseOfWrittenConfigGivesTheSameConfig) {
  const ModelInfo model = extended_model();
  for (const QuantConfig& config : {make_default_config(model, {"dw"}, 4, false),
                                    parse_config_file(data_path("all_fields.json"), model)}) {
    const QuantConfig again = parse_config_text(config_to_json(config), "round trip", model);
    expect_same_config(again, config);
  }
}

TEST(ConfigJson, WritesAdaAndFp16Fields) {
  const QuantConfig config = parse_config_file(data_path("all_fields.json"), spec_model());
  EXPECT_EQ(config.fakequant_precision_mode, "FORCE_FP16_QUANT");
  EXPECT_EQ(config.skip_fusion_layers, std::vector<std::string>{"conv1"});
  const LayerQuantConfig* conv1 = config.find_layer("conv1");
  ASSERT_NE(conv1, nullptr);
  EXPECT_EQ(conv1->weight.wts_algo, "ada_quantize");
  EXPECT_EQ(conv1->weight.beta_range_start, 20.0);
  EXPECT_EQ(conv1->activation.num_bits, 16);
  EXPECT_EQ(conv1->dmq_balancer_param, 0.25);
  const std::string text = config_to_json(config);
  EXPECT_NE(text.find("\"fakequant_precision_mode\":\"FORCE_FP16_QUANT\",\n    \"skip_fusion_layers\":[\n        \"conv1\"\n    ]"),
            std::string::npos);
  EXPECT_NE(text.find("\"reg_param\":0.01,\n            \"warm_start\":0.2,\n            \"num_iteration\":10000,\n"
                      "            \"beta_range\":[\n                20.0,\n                2.0\n            ],"),
            std::string::npos);
}

// ---- reader: defaults ------------------------------------------------------

TEST(ConfigParse, FillsDefaultsForMissingEntriesAndKeys) {
  const QuantConfig config = parse_config_text(R"({
    "activation_offset": false,
    "conv1": {"quant_enable": true, "weight_quant_params": {"num_bits": 4}},
    "fc": {"activation_quant_params": {"num_of_bins": 2048}},
    "pool": {"quant_enable": true, "activation_quant_params": {"asymmetric": true}}
  })", "inline.json", spec_model());
  EXPECT_EQ(config.version, 1);
  EXPECT_EQ(config.batch_num, 1);
  EXPECT_TRUE(config.do_fusion);
  EXPECT_EQ(config.fakequant_precision_mode, "DEFAULT");
  ASSERT_EQ(config.layers.size(), 5u);
  EXPECT_EQ(config.layers[0].name, "conv1");
  EXPECT_EQ(config.layers[4].name, "pool");

  const LayerQuantConfig* conv1 = config.find_layer("conv1");
  EXPECT_TRUE(conv1->quant_enable);
  EXPECT_EQ(conv1->activation.act_algo, "ifmr");  // missing activation_quant_params: defaults
  EXPECT_FALSE(conv1->activation.asymmetric);     // from activation_offset
  EXPECT_EQ(conv1->weight.num_bits, 4);
  EXPECT_TRUE(conv1->weight.channel_wise);

  const LayerQuantConfig* fc = config.find_layer("fc");
  EXPECT_TRUE(fc->quant_enable);  // an entry without quant_enable is quantized
  EXPECT_EQ(fc->activation.act_algo, "hfmg");
  EXPECT_EQ(fc->activation.num_of_bins, 2048);

  EXPECT_TRUE(config.find_layer("pool")->activation.asymmetric);
  const LayerQuantConfig* dw = config.find_layer("dw");  // absent: defaults, disabled
  EXPECT_FALSE(dw->quant_enable);
  EXPECT_FALSE(dw->activation.asymmetric);
}

TEST(ConfigParse, AcceptsEveryFieldAmctDefines) {
  EXPECT_NO_THROW(parse_config_text(R"({"version": 1, "batch_num": 7, "activation_offset": true, "do_fusion": false,
    "fakequant_precision_mode": "DEFAULT", "skip_fusion_layers": ["conv1", "dw"],
    "pool": {"quant_enable": true, "dmq_balancer_param": 0.8,
             "activation_quant_params": {"num_bits": 4, "act_algo": "hfmg", "num_of_bins": 1024},
             "weight_quant_params": {"wts_algo": "ada_quantize", "num_iteration": 0, "reg_param": 0.5,
                                     "warm_start": 0.5, "beta_range": [3, 1], "channel_wise": false}},
    "conv1": {"quant_enable": true, "weight_quant_params": {"num_bits": 6},
              "activation_quant_params": {"search_range": [0.7, 1.3], "search_step": 0.6}}})",
                                    "all.json", spec_model()));
}

// init_scale is beyond AMCT: read when given, written only when not AMCT's
// "kl", so the configs AMCT's fields describe are written as AMCT writes them.
TEST(ConfigJson, AdaInitScaleIsWrittenOnlyWhenNotAmcts) {
  const QuantConfig arq = parse_config_text(
      R"({"conv1": {"weight_quant_params": {"wts_algo": "ada_quantize", "init_scale": "arq"}}})", "c.json",
      spec_model());
  EXPECT_EQ(arq.find_layer("conv1")->weight.init_scale, "arq");
  EXPECT_NE(config_to_json(arq).find("\"init_scale\""), std::string::npos);
  const QuantConfig kl = parse_config_text(R"({"conv1": {"weight_quant_params": {"wts_algo": "ada_quantize"}}})",
                                           "c.json", spec_model());
  EXPECT_EQ(kl.find_layer("conv1")->weight.init_scale, "kl");
  EXPECT_EQ(config_to_json(kl).find("init_scale"), std::string::npos);
  expect_same_config(parse_config_text(config_to_json(arq), "round trip", spec_model()), arq);
}

TEST(ConfigParse, Conv3dWithoutAsymmetricIsSymmetric) {
  const QuantConfig config = parse_config_text(R"({"conv3d": {"quant_enable": true}})", "c.json", extended_model());
  EXPECT_FALSE(config.find_layer("conv3d")->activation.asymmetric);
  EXPECT_TRUE(config.find_layer("conv1")->activation.asymmetric);
}

// ---- reader: errors --------------------------------------------------------

struct BadConfig {
  const char* json;
  const char* message;  // the whole message after the "quant config 'bad.json': " prefix
  ErrorCode code = ErrorCode::kInvalidArgument;
};

void PrintTo(const BadConfig& bad, std::ostream* out) { *out << bad.json; }

class ConfigParseErrors : public testing::TestWithParam<BadConfig> {};

TEST_P(ConfigParseErrors, NamesFileLayerAndKey) {
  ErrorCode code{};
  const std::string message =
      error_of([] { parse_config_text(GetParam().json, "bad.json", extended_model()); }, &code);
  EXPECT_EQ(message, std::string("quant config 'bad.json': ") + GetParam().message);
  EXPECT_EQ(code, GetParam().code);
}

constexpr ErrorCode kType = ErrorCode::kTypeError;

INSTANTIATE_TEST_SUITE_P(
    Schema, ConfigParseErrors,
    testing::Values(
        BadConfig{R"({"version": 2})", "The version must be 1."},
        BadConfig{R"({"version": true})", "Type of version should be int, but is bool", kType},
        BadConfig{R"({"batch_num": 0})", "The batch_num must be greater than zero."},
        BadConfig{R"({"batch_num": 1.5})", "Type of batch_num should be int, but is float", kType},
        BadConfig{R"({"activation_offset": 1})", "Type of activation_offset should be bool, but is int", kType},
        BadConfig{R"({"do_fusion": "yes"})", "Type of do_fusion should be bool, but is str", kType},
        BadConfig{R"({"fakequant_precision_mode": "FP16"})",
                  "fakequant_precision_mode must be one of ['DEFAULT', 'FORCE_FP16_QUANT'], but is \"FP16\""},
        BadConfig{R"({"skip_fusion_layers": "conv1"})", "Type of skip_fusion_layers should be list, but is str", kType},
        BadConfig{R"({"skip_fusion_layers": ["conv1", "conv1"]})",
                  "Please delete repeated items in skip_fusion_layers, repeated items are ['conv1']"},
        BadConfig{R"({"skip_fusion_layers": ["ghost"]})",
                  "Layer \"ghost\" in skip_fusion_layers does not exist in the graph."},
        BadConfig{R"({"skip_fusion_layers": ["fc"]})",
                  "Skip fusion layer \"fc\" is a Linear, but only ['Conv1d', 'Conv2d', 'Conv3d'] can be fused"},
        BadConfig{R"({"joint_quant": false})", "joint_quant is an invalid layer name or parameter."},
        BadConfig{R"({"bn1": {"quant_enable": true}})", "layer bn1 does not support quant."},
        BadConfig{R"({"reflect_conv": {"quant_enable": true}})", "layer reflect_conv does not support quant."},
        BadConfig{R"({"conv1": true})", "Type of conv1 should be dict, but is bool", kType},
        BadConfig{R"({"conv1": {"quant_enable": 1}})", "Type of quant_enable should be bool, but is int in layer conv1",
                  kType},
        BadConfig{R"({"conv1": {"batch_num": 2}})", "Unknown parameter batch_num in layer conv1"},
        BadConfig{R"({"conv1": {"activation_quant_params": []}})",
                  "Type of activation_quant_params should be dict, but is list in layer conv1", kType},
        BadConfig{R"({"conv1": {"activation_quant_params": {"with_offset": true}}})",
                  "Unknown parameter with_offset in activation_quant_params in layer conv1"},
        BadConfig{R"({"conv1": {"activation_quant_params": {"num_bits": true}}})",
                  "Type of num_bits should be int, but is bool in activation_quant_params in layer conv1", kType},
        BadConfig{R"({"conv1": {"activation_quant_params": {"num_bits": 2}}})",
                  "activation num_bits 2 is not in [4, 8, 16] in layer conv1"},
        BadConfig{R"({"conv1": {"activation_quant_params": {"search_step": 0.1, "num_of_bins": 1024}}})",
                  "['search_step'] and ['num_of_bins'] can not appear at same time in activation_quant_params in layer conv1"},
        BadConfig{R"({"fc": {"activation_quant_params": {"act_algo": "ifmr", "num_of_bins": 1024}}})",
                  "['act_algo'] and ['num_of_bins'] can not appear at same time in activation_quant_params in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"max_percentile": 0.9, "act_algo": "hfmg"}}})",
                  "['max_percentile'] and ['act_algo'] can not appear at same time in activation_quant_params in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"act_algo": "kl"}}})",
                  "act_algo must be ifmr or hfmg, but is \"kl\" in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"max_percentile": 0.5}}})",
                  "The max_percentile must be greater than 0.5 and less than or equal to 1.0, but is 0.5 in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"min_percentile": 1.01}}})",
                  "The min_percentile must be greater than 0.5 and less than or equal to 1.0, but is 1.01 in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"search_range": [0.7]}}})",
                  "The search_range must be a list of two numbers, but has 1 items in activation_quant_params in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"search_range": [0.7, "1.3"]}}})",
                  "Type of search_range[1] should be float, but is str in activation_quant_params in layer fc", kType},
        BadConfig{R"({"fc": {"activation_quant_params": {"search_range": [0, 1.3]}}})",
                  "search_range[0] must be greater than zero in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"search_range": [1.3, 1.3]}}})",
                  "search_range[0] must be less than search_range[1] in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"search_step": 0}}})",
                  "The search_step must be greater than zero in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"search_step": 0.61}}})",
                  "The search_step must be less than or equal to (search_range[1] - search_range[0]) in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"num_of_bins": 100}}})",
                  "num_of_bins 100 must be in [1024, 2048, 4096, 8192] in layer fc"},
        BadConfig{R"({"fc": {"activation_quant_params": {"num_of_bins": 4294968320}}})",
                  "The num_of_bins 4294968320 is out of range in activation_quant_params in layer fc"},
        BadConfig{R"({"fc": {"dmq_balancer_param": 0.9}})",
                  "The dmq_balancer_param must be in range [0.2, 0.8], but is 0.9 in layer fc"},
        BadConfig{R"({"fc": {"dmq_balancer_param": "0.5"}})",
                  "Type of dmq_balancer_param should be float, but is str in layer fc", kType},
        BadConfig{R"({"fc": {"weight_quant_params": {"channel_wise": true}}})",
                  "The channel_wise must be False for layer type Linear in layer fc"},
        BadConfig{R"({"pool": {"weight_quant_params": {"channel_wise": true}}})",
                  "The channel_wise must be False for layer type AvgPool2d in layer pool"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"num_bits": 5}}})",
                  "weight num_bits 5 is not in [4, 6, 7, 8] in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"reg_param": 0.1}}})",
                  "reg_param is not valid param of quantize arq_quantize in weight_quant_params in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"with_offset": false}}})",
                  "with_offset is not valid param of quantize arq_quantize in weight_quant_params in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"wts_algo": "nuq"}}})",
                  "wts_algo must be arq_quantize or ada_quantize, but is \"nuq\" in weight_quant_params in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"wts_algo": "ada_quantize", "warm_start": 1}}})",
                  "warm_start must be less than 1 and larger than 0 in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"wts_algo": "ada_quantize", "reg_param": 0}}})",
                  "reg_param must be less than 1 and larger than 0 in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"wts_algo": "ada_quantize", "num_iteration": -1}}})",
                  "num_iteration must be larger or equal to 0 in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"wts_algo": "ada_quantize", "beta_range": [2, 20]}}})",
                  "beta_range[0] (start) must be larger than beta_range[1] (end) in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"wts_algo": "ada_quantize", "beta_range": [2, 0]}}})",
                  "beta_range[1] (end) must be larger than 0 in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"wts_algo": "ada_quantize", "init_scale": "max"}}})",
                  "init_scale must be \"kl\" (AMCT's) or \"arq\", but is \"max\" in layer conv1"},
        BadConfig{R"({"conv1": {"weight_quant_params": {"init_scale": "arq"}}})",
                  "init_scale is not valid param of quantize arq_quantize in weight_quant_params in layer conv1"},
        BadConfig{R"({"pool": {"activation_quant_params": {"num_bits": 16}}})",
                  "current layer pool does not support int16 quant."},
        BadConfig{R"({"fc_nobias": {"activation_quant_params": {"num_bits": 16}}})",
                  "current layer fc_nobias does not support int16 quant."},
        BadConfig{R"({"conv3d": {"quant_enable": true, "activation_quant_params": {"asymmetric": true}}})",
                  "current layer conv3d only support act symmetric quant."},
        BadConfig{R"([1, 2])", "Type of the config should be dict, but is list", kType}));

TEST(ConfigParse, RejectsRepeatedKeysNamingFileAndKeys) {
  const std::string path = write_temp("dup.json", R"({"batch_num": 1, "conv1": {"quant_enable": true,
      "quant_enable": false, "activation_quant_params": {}, "activation_quant_params": {}}, "batch_num": 2})");
  EXPECT_EQ(error_of([&] { parse_config_file(path, spec_model()); }),
            "Please delete repeated items in " + path + ", repeated items are ['quant_enable', 'activation_quant_params']");
}

TEST(ConfigParse, ReportsSyntaxErrorsAndMissingFiles) {
  const std::string message = error_of([] { parse_config_text("{\"version\": 1,,}", "broken.json", spec_model()); });
  EXPECT_NE(message.find("quant config 'broken.json' is not valid JSON"), std::string::npos) << message;
  EXPECT_NE(message.find("line 1"), std::string::npos) << message;
  ErrorCode code{};
  const std::string missing = error_of([] { parse_config_file("/nonexistent/config.json", spec_model()); }, &code);
  EXPECT_NE(missing.find("/nonexistent/config.json"), std::string::npos) << missing;
  EXPECT_EQ(code, ErrorCode::kNotFound);
}

TEST(ConfigParse, Conv3dAsymmetricIsOnlyRejectedWhenQuantized) {
  EXPECT_NO_THROW(parse_config_text(R"({"conv3d": {"quant_enable": false, "activation_quant_params": {"asymmetric": true}}})",
                                    "c.json", extended_model()));
}

}  // namespace
}  // namespace amct

namespace amct {
namespace {

using namespace config_test;

// ---- quantize_subclasses (beyond AMCT) --------------------------------------

TEST(ConfigSubclassSwitch, WrittenOnlyWhenFalseAndReadBack) {
  QuantConfig config = make_default_config(spec_model(), {}, 2, true);
  EXPECT_EQ(config_to_json(config), read_text(data_path("default_batch2.json")));  // AMCT's file by default
  config.quantize_subclasses = false;
  const std::string text = config_to_json(config);
  EXPECT_NE(text.find("\"skip_fusion_layers\":[],\n    \"quantize_subclasses\":false,\n"), std::string::npos);
  EXPECT_FALSE(config_quantizes_subclasses(text, "c.json"));
  EXPECT_FALSE(parse_config_text(text, "c.json", spec_model()).quantize_subclasses);
  EXPECT_TRUE(config_quantizes_subclasses(read_text(data_path("default_batch2.json")), "amct.json"));
}

TEST(ConfigSubclassSwitch, NonBoolValueIsRefusedByBothReaders) {
  const std::string text = R"({"version":1,"quantize_subclasses":1})";
  const std::string expected = "quant config 'c.json': Type of quantize_subclasses should be bool, but is int";
  EXPECT_EQ(error_of([&] { config_quantizes_subclasses(text, "c.json"); }), expected);
  EXPECT_EQ(error_of([&] { parse_config_text(text, "c.json", spec_model()); }), expected);
}

TEST(ConfigSubclassSwitch, SimpleConfigFieldReachesTheJson) {
  const std::string text = "quantize_subclasses: false\n";
  EXPECT_FALSE(simple_config_quantizes_subclasses(text, "s.cfg"));
  EXPECT_TRUE(simple_config_quantizes_subclasses("batch_num: 2\n", "s.cfg"));
  EXPECT_FALSE(make_config_from_simple_text(text, "s.cfg", spec_model()).quantize_subclasses);
}

// ---- linear_channel_wise (beyond AMCT) --------------------------------------

TEST(ConfigLinearChannelWise, WrittenOnlyWhenTrueAndReadBack) {
  EXPECT_EQ(config_to_json(make_default_config(spec_model(), {}, 2, true, false)),
            read_text(data_path("default_batch2.json")));  // AMCT's file by default
  const QuantConfig config = make_default_config(spec_model(), {}, 2, true, true);
  EXPECT_TRUE(config.find_layer("fc")->weight.channel_wise);
  EXPECT_FALSE(config.find_layer("pool")->weight.channel_wise);
  // AMCT's default file plus the root key and fc's channel_wise.
  const std::string text = config_to_json(config);
  EXPECT_EQ(text, read_text(data_path("linear_channel_wise_batch2.json")));
  const QuantConfig read = parse_config_text(text, "c.json", spec_model());
  EXPECT_TRUE(read.linear_channel_wise);
  EXPECT_TRUE(read.find_layer("fc")->weight.channel_wise);
  EXPECT_EQ(config_to_json(read), text);
}

TEST(ConfigLinearChannelWise, RootKeyAnywhereSetsTheLinearDefault) {
  // The key after the layer still governs it; an unset channel_wise follows it.
  const QuantConfig after = parse_config_text(
      R"({"fc": {"weight_quant_params": {"channel_wise": true}}, "linear_channel_wise": true})", "c.json", spec_model());
  EXPECT_TRUE(after.find_layer("fc")->weight.channel_wise);
  const QuantConfig unset = parse_config_text(R"({"linear_channel_wise": true, "fc": {}})", "c.json", spec_model());
  EXPECT_TRUE(unset.find_layer("fc")->weight.channel_wise);
  const QuantConfig per_tensor = parse_config_text(
      R"({"linear_channel_wise": true, "fc": {"weight_quant_params": {"channel_wise": false}}})", "c.json", spec_model());
  EXPECT_FALSE(per_tensor.find_layer("fc")->weight.channel_wise);
  const QuantConfig off = parse_config_text(R"({"linear_channel_wise": false, "fc": {}})", "c.json", spec_model());
  EXPECT_FALSE(off.find_layer("fc")->weight.channel_wise);
}

TEST(ConfigLinearChannelWise, OnlyLinearIsOptedInAndValuesAreChecked) {
  EXPECT_EQ(error_of([&] {
              parse_config_text(R"({"linear_channel_wise": true, "pool": {"weight_quant_params": {"channel_wise": true}}})",
                                "c.json", spec_model());
            }),
            "quant config 'c.json': The channel_wise must be False for layer type AvgPool2d in layer pool");
  EXPECT_EQ(error_of([&] { parse_config_text(R"({"linear_channel_wise": 1})", "c.json", spec_model()); }),
            "quant config 'c.json': Type of linear_channel_wise should be bool, but is int");
}

TEST(ConfigLinearChannelWise, SimpleConfigField) {
  const QuantConfig config = make_config_from_simple_text("linear_channel_wise: true\n", "s.cfg", spec_model());
  EXPECT_TRUE(config.linear_channel_wise);
  EXPECT_TRUE(config.find_layer("fc")->weight.channel_wise);
  EXPECT_EQ(config_to_json(config), read_text(data_path("linear_channel_wise_batch1.json")));
  // A Linear type override may ask for channel_wise true once opted in.
  const QuantConfig typed = make_config_from_simple_text(
      "linear_channel_wise: true\n"
      R"(override_layer_types { layer_type: "Linear" calibration_config { arq_quantize { channel_wise: true } } })",
      "s.cfg", spec_model());
  EXPECT_TRUE(typed.find_layer("fc")->weight.channel_wise);
  EXPECT_EQ(error_of([&] {
              make_config_from_simple_text(
                  R"(override_layer_types { layer_type: "Linear" calibration_config { arq_quantize { channel_wise: true } } })",
                  "s.cfg", spec_model());
            }),
            "simple config 's.cfg': channel_wise can only be False for Linear type");
  EXPECT_FALSE(make_config_from_simple_text("batch_num: 2\n", "s.cfg", spec_model()).linear_channel_wise);
}

}  // namespace
}  // namespace amct
