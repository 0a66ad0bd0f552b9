// tokenizer.json (Hugging Face tokenizers): model type, vocab, merges (both spellings), added
// tokens, pre-tokenizer, post-processor; then the tokenizer built from it encodes and decodes.
#include "fuzz_support.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    std::filesystem::create_directories(esa::fuzz::work_dir() / "hf");
    return (esa::fuzz::work_dir() / "hf").string();
  }();
  esa::fuzz::write_input("hf/tokenizer.json", data, size);
  esa::fuzz::expect_clean([&] {
    const auto tok = esa::text::make_tokenizer(esa::text::tokenizer_spec_from_hf_dir(dir));
    const auto ids = tok->encode("Hello, world! 12345 \xc3\xa9\xe4\xb8\xad <|im_start|>", true, true);
    (void)tok->decode(ids);
  });
  return 0;
}
