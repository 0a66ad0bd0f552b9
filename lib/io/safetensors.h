// Hugging Face safetensors reader, memory-mapped: one file (SafetensorsFile) and a model folder
// that may be sharded (SafetensorsCheckpoint).
//
// File layout (https://github.com/huggingface/safetensors, "Format"): u64 little-endian N, then
// N bytes of UTF-8 JSON (possibly padded with spaces), then the data section. The JSON is an
// object {name: {"dtype": "BF16", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}} with offsets relative to the data section. Tensors are
// row-major in PyTorch order: a Linear weight is [out_features, in_features].
//
// Every field is checked against the file before use (header length against the file size and
// a 100 MB cap, field types, non-negative dimensions with overflow-checked products, offsets
// inside the data section, byte size == numel * dtype size, no two tensors overlapping), so a
// corrupt file raises a one-line esa::Error "<file>: <what is wrong>" instead of reading out of
// bounds. Gaps between tensors and trailing bytes are tolerated.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"

namespace esa::io {

/// Element types of the safetensors spec that esa recognises. Only the floating-point ones
/// convert to float (see SafetensorsFile::to_float); the others are listed and described.
enum class SafetensorsDtype { f64, f32, f16, bf16, i64, i32, i16, i8, u64, u32, u16, u8, boolean };

/// The spec's name: "F32", "BF16", "BOOL", ...
const char* safetensors_dtype_name(SafetensorsDtype dtype);
/// Bytes per element.
size_t safetensors_dtype_size(SafetensorsDtype dtype);
/// True for F64, F32, F16 and BF16, the dtypes that to_float converts.
bool safetensors_dtype_is_float(SafetensorsDtype dtype);
/// Parses a spec name ("F32", ...); std::nullopt when esa does not know it.
std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name);

/// One tensor of a safetensors file.
struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::f32;
  std::vector<int64_t> shape;     // row-major, PyTorch order ([out, in] for a Linear weight)
  int64_t n_elements = 0;         // product of shape (1 for a scalar)
  uint64_t offset = 0;            // data_offsets[0], relative to the data section
  uint64_t n_bytes = 0;           // data_offsets[1] - data_offsets[0]
  const uint8_t* data = nullptr;  // into the mapping, bounds-checked; may be unaligned
};

/// Converts a tensor's bytes to float32 (F32 copied, F16/BF16 widened bit-exactly, F64
/// rounded). Integer and BOOL tensors throw esa::Error naming `source` and the tensor: esa never
/// guesses a scale for them.
std::vector<float> safetensors_to_float(const SafetensorsTensorInfo& tensor, const std::string& source);

/// One memory-mapped .safetensors file, fully validated at construction.
class SafetensorsFile {
 public:
  /// Header lengths above this are treated as corruption (real headers are a few MB at most).
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  /// Maps and parses `path`; throws esa::Error "<path>: ..." on any malformation.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint64_t file_size() const { return file_->size(); }
  uint64_t header_size() const { return header_size_; }   // N, the JSON's length
  uint64_t data_offset() const { return 8 + header_size_; }

  /// Tensors in file order: by data offset (the order their bytes appear in the file).
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  /// Tensor names in file order.
  std::vector<std::string> names() const;
  const SafetensorsTensorInfo* find(std::string_view name) const;
  /// Throws esa::Error naming the file and the tensor when absent.
  const SafetensorsTensorInfo& info(std::string_view name) const;
  /// The tensor as float32, row-major (see safetensors_to_float).
  std::vector<float> to_float(std::string_view name) const;
  /// The "__metadata__" object (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Sum of every tensor's element count.
  int64_t parameter_count() const;

 private:
  std::unique_ptr<MappedFile> file_;
  uint64_t header_size_ = 0;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// A Hugging Face model's weights: a folder holding model.safetensors, or
/// model.safetensors.index.json ({"weight_map": {tensor: shard file}}) and its shards, or
/// exactly one other *.safetensors file (looked for in that order, as transformers does). A path
/// to a .safetensors file or to an index .json also works. Every shard is opened (mapped, which
/// costs nothing until tensors are read) and checked at construction: a missing shard, a shard
/// path leaving the folder, or a tensor that the index lists but its shard lacks is an error
/// naming the index. With an index, the index is authoritative: tensors a shard holds but the
/// weight_map does not name are not listed.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& path);

  /// The folder (or the file) it was opened from.
  const std::string& path() const { return path_; }
  /// The index file, or "" for a single-file checkpoint.
  const std::string& index_path() const { return index_path_; }
  /// The shards, sorted by file name (one entry for a single-file checkpoint).
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }

  /// Tensor names: shard by shard, each in file order.
  const std::vector<std::string>& names() const { return names_; }
  const SafetensorsTensorInfo* find(std::string_view name) const;
  /// Throws esa::Error naming the checkpoint and the tensor when absent.
  const SafetensorsTensorInfo& info(std::string_view name) const;
  /// The shard holding a tensor (throws when absent).
  const SafetensorsFile& file_of(std::string_view name) const;
  std::vector<float> to_float(std::string_view name) const;
  /// Sum of the listed tensors' element counts.
  int64_t parameter_count() const;

 private:
  struct Entry {
    size_t shard = 0;
    const SafetensorsTensorInfo* info = nullptr;
  };
  std::string path_;
  std::string index_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace esa::io
