#include "amct/text_check.h"

#include <cstdint>
#include <cstdio>

#include "amct/error.h"

namespace amct {
namespace {

// The length of the well-formed UTF-8 sequence at `text[i]`, or 0
// (RFC 3629, Table 3-7 of the Unicode standard).
size_t utf8_sequence_length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length = 0;
  uint8_t low = 0x80, high = 0xBF;  // range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  if (byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (size_t k = 2; k < length; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  return length;
}

}  // namespace

void check_utf8(std::string_view text, const std::string& what) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned>(static_cast<uint8_t>(text[i])));
      invalid(what + " is not valid UTF-8: byte " + hex + " at offset " + std::to_string(i) + " (line " +
              std::to_string(line) + ", column " + std::to_string(column) + ")");
    }
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += length;
  }
}

std::string shorten_for_message(std::string_view value, size_t max_bytes) {
  constexpr std::string_view kEllipsis = "...";
  if (value.size() <= max_bytes) return std::string(value);
  size_t cut = max_bytes > kEllipsis.size() ? max_bytes - kEllipsis.size() : 0;
  // Never split a UTF-8 sequence: step back over continuation bytes.
  while (cut > 0 && (static_cast<uint8_t>(value[cut]) & 0xC0) == 0x80) --cut;
  return std::string(value.substr(0, cut)) + std::string(kEllipsis) + " (" + std::to_string(value.size()) +
         " bytes)";
}

}  // namespace amct
