#include "amct/number_format.h"

#include <gtest/gtest.h>

namespace amct {
namespace {

TEST(NumberFormat, DoubleMatchesPythonRepr) {
  EXPECT_EQ(format_python_double(0.7), "0.7");
  EXPECT_EQ(format_python_double(1.3), "1.3");
  EXPECT_EQ(format_python_double(0.999999), "0.999999");
  EXPECT_EQ(format_python_double(0.01), "0.01");
  EXPECT_EQ(format_python_double(1.0), "1.0");
  EXPECT_EQ(format_python_double(20.0), "20.0");
  EXPECT_EQ(format_python_double(0.0001), "0.0001");
  EXPECT_EQ(format_python_double(1e-05), "1e-05");
  EXPECT_EQ(format_python_double(1.5e16), "1.5e+16");
  EXPECT_EQ(format_python_double(-2.5), "-2.5");
  EXPECT_EQ(format_python_double(0.0), "0.0");
}

TEST(NumberFormat, Float32IsShortestRoundTrip) {
  EXPECT_EQ(format_python_float32(0.04908199f), "0.04908199");
  EXPECT_EQ(format_python_float32(0.00073471636f), "0.00073471636");
  EXPECT_EQ(format_python_float32(1.0f), "1.0");
  EXPECT_EQ(format_python_float32(3.6061341e-05f), "3.606134e-05");  // same float32
  EXPECT_EQ(format_python_float32(0.7f), "0.7");
}

}  // namespace
}  // namespace amct
