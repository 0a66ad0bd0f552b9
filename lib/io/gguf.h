// GGUF reader (versions 2 and 3), memory-mapped.
//
// Layout (little-endian): magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, then
// kv_count metadata pairs (string key, u32 value type, value), then tensor_count tensor infos
// (string name, u32 n_dims, u64 dims[n_dims] with dims[0] the fastest-varying, u32 ggml type,
// u64 offset relative to the data section), then padding to `general.alignment` (default 32),
// then the data section. Every count, length, dimension and offset is checked against the
// file size before use, so a corrupt or truncated file raises esa::Error (naming the file and
// the field) instead of reading out of bounds or allocating absurd amounts.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "io/ggml_type.h"

namespace esa::io {

/// Metadata value types of the GGUF spec.
enum class GgufType : uint32_t {
  uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, boolean = 7,
  string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};
const char* gguf_type_name(GgufType type);

/// One metadata value. Strings and string arrays are views into the mapped file (valid while
/// the GgufFile lives); numeric arrays keep a pointer to their raw little-endian elements.
struct GgufValue {
  GgufType type = GgufType::uint8;
  // Scalars (the field matching `type` is set; integers also fill both u and i when in range).
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0.0;
  bool b = false;
  std::string_view str;
  // Arrays.
  GgufType elem_type = GgufType::uint8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;                 // numeric and bool arrays
  std::vector<std::string_view> strings;        // string arrays
  std::vector<GgufValue> items;                 // arrays of arrays

  bool is_integer() const;
  bool is_float() const { return type == GgufType::float32 || type == GgufType::float64; }
};

/// One tensor's description. `shape` is in GGUF order: shape[0] varies fastest, so a PyTorch
/// weight [out, in] appears as shape {in, out}.
struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  GgmlType type = GgmlType::f32;
  uint64_t offset = 0;      // relative to the data section
  int64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping, bounds-checked
};

class GgufFile {
 public:
  /// Maps and parses `path`; throws esa::Error on any malformation.
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return file_->size(); }

  /// Metadata pairs in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  /// Typed getters: throw esa::Error naming the file and key when missing or of the wrong type.
  const GgufValue& get(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;  // accepts integer values too
  bool get_bool(std::string_view key) const;
  std::optional<std::string> find_string(std::string_view key) const;
  std::optional<int64_t> find_int(std::string_view key) const;
  std::optional<double> find_float(std::string_view key) const;
  std::optional<bool> find_bool(std::string_view key) const;
  /// Array getters (element type checked; numeric conversions from any numeric element type).
  std::vector<std::string_view> get_string_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const GgufTensorInfo& tensor(std::string_view name) const;  // throws when missing


 private:
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

/// Printable form of a metadata value (arrays abbreviated), for `esa info`.
std::string gguf_value_to_string(const GgufValue& value, size_t max_items = 8);

}  // namespace esa::io
