// File helpers: every output goes to a temporary file in the same directory
// and is renamed over the target, so a failure never leaves a truncated file.
#pragma once

#include <string>
#include <string_view>

namespace amct {

// Reads a whole file; throws kNotFound / kIoError naming `what` and the path.
std::string read_file(const std::string& path, std::string_view what);

// Writes `data` to `path` atomically, creating missing parent directories.
void write_file_atomic(const std::string& path, std::string_view data, std::string_view what);

// AMCT's file-name rule: not empty, not ending in '/', base name of 1..254 chars.
void check_output_file_name(const std::string& path, std::string_view what);

}  // namespace amct
