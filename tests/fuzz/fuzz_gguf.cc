// GGUF: the reader (header, metadata, tensor table, bounds), then what esa builds from a GGUF —
// the model config, the tokenizer from the GGUF vocabulary, and small tensors dequantised.
#include "fuzz_support.h"
#include "io/gguf.h"
#include "model/config.h"
#include "model/weights.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = esa::fuzz::write_input("input.gguf", data, size);
  esa::fuzz::expect_clean([&] {
    const esa::io::GgufFile gguf(path);
    for (const auto& [key, value] : gguf.metadata()) (void)esa::io::gguf_value_to_string(value);
    for (const auto& t : gguf.tensors()) {
      if (t.n_elements <= (int64_t(1) << 16)) (void)esa::dequantize_tensor(gguf, t);
    }
    esa::fuzz::expect_clean([&] { (void)esa::config_from_gguf(gguf); });
    const auto tok = esa::text::make_tokenizer(esa::text::tokenizer_spec_from_gguf(gguf));
    const auto ids = tok->encode("Hello, world! 12345 <|im_start|>user\n", true, true);
    (void)tok->decode(ids);
  });
  return 0;
}
