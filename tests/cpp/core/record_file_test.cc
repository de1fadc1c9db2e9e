#include "amct/record.h"

#include <gtest/gtest.h>

#include "amct/error.h"

namespace amct {
namespace {

TEST(RecordFile, PrintsAmctTextFormat) {
  ScaleOffsetRecord record;
  auto* entry = record.add_record();
  entry->set_key("pool");
  auto* v = entry->mutable_value();
  v->set_scale_d(0.007061911f);
  v->set_offset_d(19);
  v->add_scale_w(1.0f);
  v->add_offset_w(0);
  v->set_act_type("INT8");
  EXPECT_EQ(record_to_text(record),
            "record {\n"
            "  key: \"pool\"\n"
            "  value {\n"
            "    scale_d: 0.007061911\n"
            "    offset_d: 19\n"
            "    scale_w: 1.0\n"
            "    offset_w: 0\n"
            "    act_type: \"INT8\"\n"
            "  }\n"
            "}\n");
  const auto parsed = parse_record_text(record_to_text(record), "mem");
  ASSERT_NE(find_record(parsed, "pool"), nullptr);
  EXPECT_EQ(find_record(parsed, "pool")->scale_d(), 0.007061911f);
}

TEST(RecordFile, SyntaxErrorNamesFileAndLine) {
  try {
    parse_record_text("record {\n  key: \"a\"\n  value { scale_d: oops }\n}\n", "rec.txt");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rec.txt"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos);
  }
}

}  // namespace
}  // namespace amct
