// safetensors: the 8-byte length, the JSON header, dtypes, shapes, offsets against the file size,
// and the conversion of small tensors to float.
#include "fuzz_support.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = esa::fuzz::write_input("input.safetensors", data, size);
  esa::fuzz::expect_clean([&] {
    const esa::io::SafetensorsFile file(path);
    for (const auto& t : file.tensors()) {
      if (t.n_elements <= (int64_t(1) << 16)) (void)esa::io::safetensors_to_float(t, path);
    }
  });
  return 0;
}
