#include "amct/json_writer.h"

#include <gtest/gtest.h>

namespace amct {
namespace {

using Json = nlohmann::ordered_json;

TEST(ConfigJsonWriter, MatchesPythonJsonDumpWithIndent4) {
  // Expected text printed by Python:
  // json.dumps(obj, indent=4, separators=(",", ":")) on the same object.
  Json obj = Json::object();
  obj["a"] = Json::array();
  obj["b"] = Json::object();
  obj["c"] = Json::array({1, 2.5, true, nullptr, "x\"y\u00e9\U0001F600\x7f\n"});
  obj["d"] = 1e-05;
  obj["e"] = 1e16;
  obj["f"] = Json::object({{"g", Json::array({Json::array(), Json::object({{"h", -0.0}})})}});
  const std::string expected =
      "{\n    \"a\":[],\n    \"b\":{},\n    \"c\":[\n        1,\n        2.5,\n        true,\n        null,\n"
      "        \"x\\\"y\\u00e9\\ud83d\\ude00\\u007f\\n\"\n    ],\n    \"d\":1e-05,\n    \"e\":1e+16,\n"
      "    \"f\":{\n        \"g\":[\n            [],\n            {\n                \"h\":-0.0\n            }\n"
      "        ]\n    }\n}";
  EXPECT_EQ(to_python_json(obj), expected);
}

TEST(ConfigJsonWriter, IntegersAndFloatsKeepTheirKind) {
  EXPECT_EQ(to_python_json(Json::array({20, 20.0, 0.7, 1.0})), "[\n    20,\n    20.0,\n    0.7,\n    1.0\n]");
}

TEST(ConfigJsonWriter, NonFiniteFloatsUsePythonLiterals) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(to_python_json(Json::array({inf, -inf, std::nan("")}), 0), "[\nInfinity,\n-Infinity,\nNaN\n]");
}

}  // namespace
}  // namespace amct
