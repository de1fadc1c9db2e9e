// Regression tests of issue 10 for the readers of user files: ONNX tensors
// (items 3, 4), IFMR candidate counts (6), JSON nesting (7), non-finite
// simple-config values (11), and messages (16: invalid UTF-8, 1e400, long
// values). Each case ends in an amct::Error that says what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>

#include "amct/calib/ifmr.h"
#include "amct/config.h"
#include "amct/error.h"
#include "amct/onnx_graph.h"
#include "amct/record.h"
#include "amct/record_check.h"
#include "amct/tensor_ranges.h"
#include "amct/text_check.h"
#include "config_test_model.h"

namespace amct {
namespace {

using config_test::error_of;
using config_test::spec_model;
// Whether `text` contains `part`; on failure the whole text is printed.
testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "\"" << text.substr(0, 400) << "\" does not contain \"" << part << "\"";
}

onnx::TensorProto tensor(const std::string& name, onnx::TensorProto::DataType type, std::vector<int64_t> dims) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(type);
  for (int64_t d : dims) t.add_dims(d);
  return t;
}

// ---- item 3: tensor data shorter or longer than its dims ----

TEST(ReaderHardening, Float16RawDataShorterThanDimsIsRefused) {
  onnx::TensorProto t = tensor("conv1.weight", onnx::TensorProto::FLOAT16, {8, 3, 3, 3});
  t.set_raw_data(std::string(6, '\0'));  // 3 halves for 216
  ErrorCode code{};
  const std::string message = error_of([&] { tensor_to_floats(t); }, &code);
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(message, "tensor 'conv1.weight' (FLOAT16, dims [8, 3, 3, 3]) needs 216 values"));
  EXPECT_TRUE(contains(message, "216 values, 432 bytes of raw_data, but raw_data has 6 bytes"));
}

TEST(ReaderHardening, TypedFieldsShorterThanDimsAreRefused) {
  onnx::TensorProto half = tensor("h", onnx::TensorProto::FLOAT16, {4});
  half.add_int32_data(0x3c00);
  EXPECT_TRUE(contains(error_of([&] { tensor_to_floats(half); }),
              "tensor 'h' (FLOAT16, dims [4]) needs 4 values in int32_data, but int32_data has 1"));
  onnx::TensorProto wide = tensor("d", onnx::TensorProto::DOUBLE, {3});
  wide.add_double_data(1.0);
  wide.add_double_data(2.0);
  EXPECT_TRUE(contains(error_of([&] { tensor_to_floats(wide); }),
              "tensor 'd' (DOUBLE, dims [3]) needs 3 values in double_data, but double_data has 2"));
}

TEST(ReaderHardening, DoubleTensorWithFloatSizedRawDataIsRefused) {
  // A bias of 4 doubles stored as 4 floats (16 bytes): read as doubles it
  // would over-read by 16 bytes.
  onnx::TensorProto t = tensor("fc.bias", onnx::TensorProto::DOUBLE, {4});
  const float values[4] = {1, 2, 3, 4};
  t.set_raw_data(std::string(reinterpret_cast<const char*>(values), sizeof values));
  EXPECT_TRUE(contains(error_of([&] { tensor_to_floats(t); }),
              "tensor 'fc.bias' (DOUBLE, dims [4]) needs 4 values, 32 bytes of raw_data, but raw_data has 16 bytes"));
}

TEST(ReaderHardening, WellFormedTensorsStillRead) {
  onnx::TensorProto half = tensor("h", onnx::TensorProto::FLOAT16, {2});
  const uint16_t bits[2] = {0x3c00, 0xc000};  // 1, -2
  half.set_raw_data(std::string(reinterpret_cast<const char*>(bits), sizeof bits));
  EXPECT_EQ(tensor_to_floats(half), (std::vector<float>{1.0f, -2.0f}));
  onnx::TensorProto wide = tensor("d", onnx::TensorProto::DOUBLE, {2});
  wide.add_double_data(0.5);
  wide.add_double_data(-4.0);
  EXPECT_EQ(tensor_to_floats(wide), (std::vector<float>{0.5f, -4.0f}));
}

// ---- item 4: dims whose product overflows, negative dims ----

TEST(ReaderHardening, DimsProductOverflowingInt64IsRefused) {
  onnx::TensorProto t = tensor("conv1.weight", onnx::TensorProto::FLOAT, {int64_t{1} << 32, int64_t{1} << 32, 3, 3});
  t.set_raw_data(std::string(36, '\0'));
  EXPECT_TRUE(contains(error_of([&] { tensor_to_floats(t); }),
              "tensor 'conv1.weight' has dims [4294967296, 4294967296, 3, 3], whose product overflows int64"));
  EXPECT_TRUE(contains(error_of([&] { tensor_numel(t); }), "overflows int64"));
}

TEST(ReaderHardening, NegativeDimIsRefused) {
  onnx::TensorProto t = tensor("w", onnx::TensorProto::FLOAT, {-2, -3});
  t.set_raw_data(std::string(24, '\0'));
  EXPECT_TRUE(contains(error_of([&] { tensor_to_floats(t); }),
              "tensor 'w' has dims [-2, -3]; a dim cannot be negative"));
}

// ---- item 6: IFMR candidate counts ----

std::string config_with_ifmr(const std::string& search_range, const std::string& search_step) {
  return R"({"fc": {"activation_quant_params": {"search_range": )" + search_range + R"(, "search_step": )" +
         search_step + "}}}";
}

TEST(ReaderHardening, ConfigJsonWithTooManyIfmrCandidatesIsRefused) {
  EXPECT_TRUE(contains(error_of([&] { parse_config_text(config_with_ifmr("[0.7, 1e19]", "0.01"), "c.json", spec_model()); }),
              "quant config 'c.json': IFMR search_range [0.7, 1e+19] with search_step 0.01 gives "));
  // Large but finite counts used to allocate until memory ran out.
  EXPECT_TRUE(contains(error_of([&] { parse_config_text(config_with_ifmr("[0.7, 1000000.0]", "1e-07"), "c.json", spec_model()); }),
              "expected 1 to 100000 in layer fc"));
  EXPECT_TRUE(contains(error_of([&] { parse_config_text(config_with_ifmr("[0.7, 1.3]", "1e-300"), "c.json", spec_model()); }),
              "with search_step 1e-300 gives"));
  // One more than the largest count accepted (tests/data/configs/all_fields.json has 100000).
  EXPECT_TRUE(contains(error_of([&] { parse_config_text(config_with_ifmr("[0.5, 1.50001]", "1e-05"), "c.json", spec_model()); }),
                       "with search_step 1e-05 gives 100001 candidates; expected 1 to 100000 in layer fc"));
}

TEST(ReaderHardening, SimpleConfigWithTooManyIfmrCandidatesIsRefused) {
  const std::string text =
      "common_config { ifmr_quantize { search_range_start: 0.7 search_range_end: 1e19 search_step: 0.01 } }";
  EXPECT_TRUE(contains(error_of([&] { make_config_from_simple_text(text, "s.cfg", spec_model()); }),
              "simple config 's.cfg': IFMR search_range [0.7, 1e+19] with search_step 0.01 gives"));
}

TEST(ReaderHardening, IfmrSearchRefusesTooManyCandidates) {
  ActivationQuantParams params;
  params.search_range_end = 1e19;
  EXPECT_TRUE(contains(error_of([&] { ifmr_candidates(1.0f, -1.0f, params); }), "expected 1 to 100000"));
  EXPECT_TRUE(contains(error_of([&] { check_ifmr_params(params); }), "expected 1 to 100000"));
  params.search_range_end = 1.3;
  params.search_step = std::numeric_limits<double>::denorm_min();
  EXPECT_TRUE(contains(error_of([&] { ifmr_candidates(1.0f, -1.0f, params); }), "gives unboundedly many candidates"));
}

// ---- item 7: nesting depth ----

TEST(ReaderHardening, DeeplyNestedConfigJsonIsRefused) {
  const size_t depth = 1000000;
  const std::string text = R"({"fc": {"activation_quant_params": )" + std::string(depth, '[') +
                           std::string(depth, ']') + "}}";
  ErrorCode code{};
  EXPECT_TRUE(contains(error_of([&] { parse_config_text(text, "deep.json", spec_model()); }, &code),
              "quant config 'deep.json' is nested deeper than 64 levels (at 'fc.activation_quant_params')"));
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
}

// ---- item 11: non-finite simple config values ----

TEST(ReaderHardening, SimpleConfigWithInfiniteSearchRangeIsRefusedAtReadTime) {
  for (const std::string value : {"inf", "1e39"}) {
    const std::string text =
        "common_config { ifmr_quantize { search_range_start: 0.7 search_range_end: " + value + " search_step: 0.01 } }";
    EXPECT_TRUE(contains(error_of([&] { make_config_from_simple_text(text, "s.cfg", spec_model()); }),
                "simple config 's.cfg': The search_range[1] must be a finite number, but is"))
        << value;
  }
  const std::string ada =
      "common_config { ada_quantize { beta_range_start: inf beta_range_end: 2 } }";
  EXPECT_TRUE(contains(error_of([&] { make_config_from_simple_text(ada, "s.cfg", spec_model()); }),
              "The beta_range[0] must be a finite number, but is inf"));
}

// ---- item 16: messages ----

TEST(ReaderHardening, InvalidUtf8NamesTheFileAndOffset) {
  const std::string json = "{\"fc\": {\"quant_enable\": true, \"x\xff\": 1}}";
  ErrorCode code{};
  EXPECT_EQ(error_of([&] { parse_config_text(json, "bad.json", spec_model()); }, &code),
            "quant config 'bad.json' is not valid UTF-8: byte 0xFF at offset 32 (line 1, column 33)");
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(error_of([&] { make_config_from_simple_text("batch_num: 1\n# \xc3\x28\n", "bad.cfg", spec_model()); }),
              "simple config 'bad.cfg' is not valid UTF-8: byte 0xC3 at offset 15 (line 2, column 3)"));
  EXPECT_TRUE(contains(error_of([&] { parse_record_text("# \xed\xa0\x80\n", "bad.txt"); }),
              "record file 'bad.txt' is not valid UTF-8: byte 0xED at offset 2"));
  EXPECT_TRUE(contains(error_of([&] { parse_tensor_ranges("{\"\xc0\xaf\": 1}", "bad.ranges.json"); }),
              "tensor ranges file 'bad.ranges.json' is not valid UTF-8: byte 0xC0 at offset 2"));
  EXPECT_NO_THROW(check_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "text"));
}

TEST(ReaderHardening, NumberOutOfDoubleRangeNamesFileAndField) {
  ErrorCode code{};
  EXPECT_EQ(error_of([&] { parse_config_text(config_with_ifmr("[0.7, 1.3]", "1e400"), "big.json", spec_model()); },
                     &code),
            "quant config 'big.json': the number 1e400 of 'fc.activation_quant_params.search_step' is out of the "
            "range of a double");
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
}

TEST(ReaderHardening, LongValuesAreCutInMessages) {
  const std::string key(1 << 20, 'k');
  const std::string message =
      error_of([&] { parse_config_text("{\"" + key + "\": 1}", "long.json", spec_model()); });
  EXPECT_TRUE(contains(message, "quant config 'long.json': " + std::string(77, 'k') +
                                 "... (1048576 bytes) is an invalid layer name or parameter."));
  EXPECT_LT(message.size(), 200u);
  const std::string unknown =
      error_of([&] { parse_config_text("{\"fc\": {\"" + key + "\": 1}}", "long.json", spec_model()); });
  EXPECT_TRUE(contains(unknown, "Unknown parameter kkk"));
  EXPECT_LT(unknown.size(), 200u);
  // A cut never splits a UTF-8 character.
  EXPECT_EQ(shorten_for_message(std::string(76, 'a') + "\xc3\xa9" + std::string(10, 'b')),
            std::string(76, 'a') + "... (88 bytes)");
  EXPECT_EQ(shorten_for_message("short"), "short");
}

TEST(ReaderHardening, TensorRangesVersionOfAnotherTypeIsRefused) {
  EXPECT_TRUE(contains(error_of([&] { parse_tensor_ranges(R"({"version": "1", "ranges": []})", "r.json"); }),
              "tensor ranges file 'r.json': \"version\" must be 1"));
}

// ---- found by fuzz/onnx_save (fuzz/regressions/onnx_save/layer_node_without_output.onnx) ----

TEST(ReaderHardening, LayerNodeWithoutOutputIsRefusedByTheRecordCheck) {
  onnx::GraphProto graph;
  *graph.add_initializer() = make_float_tensor("mm.weight", {3, 2}, std::vector<float>(6, 0.5f));
  auto* node = graph.add_node();
  node->set_op_type("MatMul");
  node->set_name("mm");
  node->add_input("x");
  node->add_input("mm.weight");
  set_string_attribute(*node, "op_data_type", "float");
  const ScaleOffsetRecord record = parse_record_text(
      "record {\n  key: \"mm\"\n  value {\n    scale_d: 0.05\n    offset_d: -1\n    scale_w: 0.002\n"
      "    offset_w: 0\n  }\n}\n",
      "r.txt");
  ErrorCode code{};
  EXPECT_EQ(error_of([&] { check_record(record, graph, "r.txt", "m.onnx"); }, &code),
            "model 'm.onnx': node 'mm' (MatMul) has no output; a quantized layer needs one");
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace amct
