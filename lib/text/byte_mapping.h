// GPT-2's reversible byte <-> unicode mapping used by byte-level BPE vocabularies: the 188
// printable bytes (33..126, 161..172, 174..255) stand for themselves, the other 68 bytes map,
// in order, to U+0100.. (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A). Reference: GPT-2's
// encoder.py bytes_to_unicode(), tokenizers' pre_tokenizers/byte_level.rs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace esa::text {

class ByteMapping {
 public:
  ByteMapping();
  /// UTF-8 spelling (1 or 2 bytes) of the character standing for `byte`.
  const std::string& encode_byte(uint8_t byte) const { return byte_to_utf8_[byte]; }
  /// Raw bytes -> mapped text.
  std::string encode(std::string_view bytes) const;
  /// Mapped text -> raw bytes; false (and `out` unspecified) when a character of `mapped` is not
  /// in the alphabet or `mapped` is not valid UTF-8.
  bool decode(std::string_view mapped, std::string& out) const;

 private:
  std::array<std::string, 256> byte_to_utf8_;
  std::array<int16_t, 324> cp_to_byte_;  // code point (< 324) -> byte, -1 when unmapped
};

/// The process-wide mapping (immutable).
const ByteMapping& byte_mapping();

/// Length of the valid UTF-8 prefix of `s` (== s.size() when all valid). Overlong forms,
/// surrogates and code points above U+10FFFF are invalid, as in Rust's str.
size_t utf8_valid_prefix(std::string_view s);

/// Throws esa::Error "<what>: not UTF-8 text (invalid byte 0xNN at line L, byte offset N)" unless
/// `s` is valid UTF-8. Input texts are checked: tokenizing stray bytes would run without a word
/// of warning on a file that is not the text the user meant (Latin-1, UTF-16, a binary).
void check_utf8(std::string_view s, const std::string& what);

}  // namespace esa::text
