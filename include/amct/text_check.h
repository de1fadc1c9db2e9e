// Checks and helpers for the text files a user hands us (config JSON, simple
// config, record, tensor ranges): their content ends up in error messages,
// which Python decodes as UTF-8 and prints to a terminal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace amct {

// Throws kInvalidArgument "<what> is not valid UTF-8: byte 0xNN at offset K
// ..." for the first byte that does not start or continue a well-formed
// UTF-8 sequence (overlong forms and surrogates included).
void check_utf8(std::string_view text, const std::string& what);

// `value` as it may appear in a message: values longer than `max_bytes` are
// cut (on a character boundary) and end in "...", so a 1 MB key is not
// echoed in full.
std::string shorten_for_message(std::string_view value, size_t max_bytes = 80);

}  // namespace amct
