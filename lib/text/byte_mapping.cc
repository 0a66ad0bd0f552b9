// GPT-2 byte <-> unicode mapping and a UTF-8 validator (see byte_mapping.h).
#include "text/byte_mapping.h"

#include <algorithm>

#include "core/error.h"

namespace esa::text {
namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

ByteMapping::ByteMapping() {
  cp_to_byte_.fill(-1);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    const uint32_t cp = printable ? b : next++;
    append_utf8(byte_to_utf8_[b], cp);
    cp_to_byte_[cp] = static_cast<int16_t>(b);
  }
}

std::string ByteMapping::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += byte_to_utf8_[c];
  return out;
}

bool ByteMapping::decode(std::string_view mapped, std::string& out) const {
  out.clear();
  const auto* s = reinterpret_cast<const unsigned char*>(mapped.data());
  const size_t n = mapped.size();
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    if (s[i] < 0x80) {
      cp = s[i];
      i += 1;
    } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
      cp = ((s[i] & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
      i += 2;
    } else {
      return false;  // every character of the alphabet is below U+0800
    }
    if (cp >= cp_to_byte_.size() || cp_to_byte_[cp] < 0) return false;
    out += static_cast<char>(cp_to_byte_[cp]);
  }
  return true;
}

const ByteMapping& byte_mapping() {
  static const ByteMapping mapping;
  return mapping;
}

size_t utf8_valid_prefix(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    const unsigned char c = s[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t min_cp, cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min_cp = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min_cp = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min_cp = 0x10000; }
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return n;
}

void check_utf8(std::string_view s, const std::string& what) {
  const size_t valid = utf8_valid_prefix(s);
  if (valid == s.size()) return;
  const int64_t line = 1 + std::count(s.begin(), s.begin() + std::ptrdiff_t(valid), '\n');
  ESA_FAIL("{}: not UTF-8 text (invalid byte 0x{:02x} at line {}, byte offset {})", what,
           static_cast<unsigned char>(s[valid]), line, valid);
}

}  // namespace esa::text
