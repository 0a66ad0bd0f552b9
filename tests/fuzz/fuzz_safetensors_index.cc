// model.safetensors.index.json next to two real shards (tests/fixtures/safetensors/llama_sharded):
// the weight_map, shard names (including ones that try to leave the folder), missing tensors.
#include "fuzz_support.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path dir = [] {
    const auto d = esa::fuzz::work_dir() / "checkpoint";
    std::filesystem::create_directories(d);
    const std::filesystem::path src = esa::fuzz::fixtures_dir() + "/safetensors/llama_sharded";
    for (const char* shard : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
      std::filesystem::copy_file(src / shard, d / shard, std::filesystem::copy_options::overwrite_existing);
    }
    return d;
  }();
  esa::fuzz::write_input("checkpoint/model.safetensors.index.json", data, size);
  esa::fuzz::expect_clean([&] {
    const esa::io::SafetensorsCheckpoint ckpt(dir.string());
    for (const auto& name : ckpt.names()) (void)ckpt.info(name);
  });
  return 0;
}
