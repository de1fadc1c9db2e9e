// JSON text in the exact layout of Python's json.dump(value, f, indent=4,
// separators=(',', ':')), which is how AMCT writes its config files. Matching
// it byte for byte lets users diff our files against AMCT's.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace amct {

// Objects keep their insertion order; integers print as integers and floats
// as Python's repr (0.7, 1.0, 1e-05); strings are ASCII-escaped like Python's
// default ensure_ascii=True; `ascii_only` false writes non-ASCII characters
// as they are, like ensure_ascii=False (AMCT's auto calibration files). There
// is no trailing newline, as with json.dump.
std::string to_python_json(const nlohmann::ordered_json& value, int indent = 4, bool ascii_only = true);

}  // namespace amct
