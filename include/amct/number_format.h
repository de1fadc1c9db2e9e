// Text forms of numbers that match what AMCT's Python writes, so our config
// JSON and record files are byte-identical to AMCT's.
#pragma once

#include <string>

namespace amct {

// Python's repr() of a float (double): shortest round-trip digits, e.g. 0.7,
// 1.0, 1e-05, 0.0001.
std::string format_python_double(double value);

// The shortest decimal that round-trips a float32 value, in Python's repr
// layout (what AMCT's record writer prints): 0.04908199, 1.0, 3.6061341e-05.
std::string format_python_float32(float value);

// A value quoted in an error message: "%.9g", every digit a float32 holds.
std::string format_message_number(double value);

}  // namespace amct
