#include "amct/json_writer.h"

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "amct/error.h"
#include "amct/number_format.h"

namespace amct {
namespace {

void append_escape(std::string& out, uint32_t code_unit) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(code_unit));
  out += buf;
}

// Decodes one UTF-8 sequence starting at text[pos]; advances pos.
uint32_t decode_utf8(const std::string& text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  int length = 0;
  uint32_t code = 0;
  if (lead < 0x80) {
    length = 1;
    code = lead;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    code = lead & 0x07;
  } else {
    invalid("JSON string is not valid UTF-8: " + text);
  }
  if (pos + length > text.size()) invalid("JSON string is not valid UTF-8: " + text);
  for (int i = 1; i < length; ++i) {
    const unsigned char next = byte(pos + i);
    if ((next & 0xC0) != 0x80) invalid("JSON string is not valid UTF-8: " + text);
    code = (code << 6) | (next & 0x3F);
  }
  pos += length;
  return code;
}

// Python's ensure_ascii encoder: printable ASCII passes through, the usual
// short escapes are used, everything else becomes \u and four hex digits (UTF-16 surrogate
// pairs above U+FFFF). Without `ascii_only` (ensure_ascii=False) characters
// above U+007E keep their UTF-8 bytes; control characters are still escaped.
void append_string(std::string& out, const std::string& text, bool ascii_only) {
  out += '"';
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const uint32_t code = decode_utf8(text, pos);
    switch (code) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (code >= 0x20 && code <= 0x7E) {
      out += static_cast<char>(code);
    } else if (!ascii_only && code > 0x7E) {
      out.append(text, start, pos - start);
    } else if (code < 0x10000) {
      append_escape(out, code);
    } else {
      const uint32_t offset = code - 0x10000;
      append_escape(out, 0xD800 | (offset >> 10));
      append_escape(out, 0xDC00 | (offset & 0x3FF));
    }
  }
  out += '"';
}

// json.dump writes non-finite floats as JavaScript literals.
std::string float_text(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  return format_python_double(value);
}

void append_value(std::string& out, const nlohmann::ordered_json& value, int indent, int depth, bool ascii_only) {
  const std::string inner = "\n" + std::string(static_cast<size_t>(indent * (depth + 1)), ' ');
  const std::string outer = "\n" + std::string(static_cast<size_t>(indent * depth), ' ');
  switch (value.type()) {
    case nlohmann::ordered_json::value_t::object: {
      if (value.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (const auto& [key, child] : value.items()) {
        out += first ? "" : ",";
        out += inner;
        first = false;
        append_string(out, key, ascii_only);
        out += ':';
        append_value(out, child, indent, depth + 1, ascii_only);
      }
      out += outer + "}";
      return;
    }
    case nlohmann::ordered_json::value_t::array: {
      if (value.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const auto& child : value) {
        out += first ? "" : ",";
        out += inner;
        first = false;
        append_value(out, child, indent, depth + 1, ascii_only);
      }
      out += outer + "]";
      return;
    }
    case nlohmann::ordered_json::value_t::string:
      append_string(out, value.get_ref<const std::string&>(), ascii_only);
      return;
    case nlohmann::ordered_json::value_t::boolean:
      out += value.get<bool>() ? "true" : "false";
      return;
    case nlohmann::ordered_json::value_t::number_integer:
      out += std::to_string(value.get<int64_t>());
      return;
    case nlohmann::ordered_json::value_t::number_unsigned:
      out += std::to_string(value.get<uint64_t>());
      return;
    case nlohmann::ordered_json::value_t::number_float:
      out += float_text(value.get<double>());
      return;
    case nlohmann::ordered_json::value_t::null:
      out += "null";
      return;
    case nlohmann::ordered_json::value_t::discarded:
    case nlohmann::ordered_json::value_t::binary:
      invalid("binary or discarded JSON values have no text form");
  }
}

}  // namespace

std::string to_python_json(const nlohmann::ordered_json& value, int indent, bool ascii_only) {
  std::string out;
  append_value(out, value, indent, 0, ascii_only);
  return out;
}

}  // namespace amct
