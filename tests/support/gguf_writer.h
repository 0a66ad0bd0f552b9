// A minimal GGUF writer for tests: builds valid files byte by byte so that tests can corrupt
// them precisely (and fuzzing can seed from them). Not part of esa_core: esa never writes GGUF.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/ggml_type.h"

namespace esa::test {

class GgufWriter {
 public:
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  /// Raw value bytes after the type id (for hand-made corruptions).
  void add_raw(const std::string& key, uint32_t type, const std::string& value_bytes);
  /// `shape` in GGUF order (shape[0] fastest); `data` must hold the tensor's bytes.
  void add_tensor(const std::string& name, std::vector<uint64_t> shape, io::GgmlType type, std::string data);

  /// The file's bytes. `offsets_out` (optional) receives the file offset of each tensor info's
  /// offset field, so tests can rewrite it.
  std::string build(uint32_t version = 3, uint64_t alignment = 32, std::vector<size_t>* offset_fields = nullptr) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> shape;
    io::GgmlType type;
    std::string data;
  };
  std::vector<std::string> kvs_;  // serialised key + type + value
  std::vector<Tensor> tensors_;
};

/// A tiny but complete llama GGUF: 2 layers, hidden 32, 4 heads, 2 KV heads, ffn 64, a
/// byte-level BPE vocabulary of the 256 byte tokens + a few merges + ChatML specials, F32 and
/// Q8_0 tensors. `esa info` and the tokenizer accept it. For corruption tests, `drop_tensor`
/// leaves one tensor out and `narrow_tensor` writes one projection with half its rows;
/// `extra_tokens` lists that many tokens past the embedding's rows.
std::string tiny_llama_gguf(const std::string& drop_tensor = "", const std::string& narrow_tensor = "",
                            int extra_tokens = 0);

/// Writes bytes to a file (throws esa::Error on failure).
void write_file(const std::string& path, const std::string& bytes);

}  // namespace esa::test
