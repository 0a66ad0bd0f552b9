// The byte-level BPE encoder (SmolLM2's tokenizer, from the embedded model's GGUF) on
// arbitrary bytes: never crashes, every id is in the vocabulary, and for valid UTF-8 (special-token
// text not parsed) decode(encode(x)) == x — where every byte of x has its byte-level token: a
// vocabulary may lack some (SmolLM2 has none for most control bytes, e.g. 0x1d), and such bytes
// become the unknown token or are dropped, as Hugging Face tokenizers does.
#include <algorithm>
#include <array>
#include <cstdio>

#include "fuzz_support.h"
#include "text/byte_mapping.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<esa::text::Tokenizer> tok = esa::text::load_tokenizer(esa::fuzz::model_path());
  static const std::array<bool, 256> representable = [] {
    std::array<bool, 256> r{};
    for (int b = 0; b < 256; ++b) {
      r[size_t(b)] = tok->token_id(esa::text::byte_mapping().encode_byte(uint8_t(b))).has_value();
    }
    return r;
  }();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto ids = tok->encode(text, /*add_special=*/false, /*parse_special=*/false);
  for (const int32_t id : ids) {
    if (id < 0 || id >= tok->vocab_size()) {
      std::fprintf(stderr, "fuzz_bpe: id %d outside the vocabulary (%d)\n", id, tok->vocab_size());
      std::abort();
    }
  }
  const std::string back = tok->decode(ids);
  const bool all_representable =
      std::all_of(data, data + size, [](uint8_t b) { return representable[b]; });
  if (all_representable && esa::text::utf8_valid_prefix(text) == text.size() && back != text) {
    std::fprintf(stderr, "fuzz_bpe: decode(encode(x)) != x for %zu bytes of valid UTF-8\n", size);
    std::abort();
  }
  (void)tok->encode(text, true, true);  // special-token parsing on the same bytes
  return 0;
}
