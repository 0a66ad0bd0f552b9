// GGUF reader: every read goes through Cursor, which checks the remaining bytes first, and
// every count is checked against what the rest of the file could possibly hold before anything
// is allocated, so hostile files fail with a message instead of a crash or an allocation bomb.
#include "io/gguf.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace esa::io {
namespace {

constexpr uint32_t kMaxDims = 4;        // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;
constexpr uint64_t kMaxKeyLength = 65535;

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::uint8: case GgufType::int8: case GgufType::boolean: return 1;
    case GgufType::uint16: case GgufType::int16: return 2;
    case GgufType::uint32: case GgufType::int32: case GgufType::float32: return 4;
    case GgufType::uint64: case GgufType::int64: case GgufType::float64: return 8;
    case GgufType::string: case GgufType::array: return 0;
  }
  return 0;
}

bool valid_type(uint32_t t) { return t <= 12; }

class Cursor {
 public:
  Cursor(const MappedFile& file) : file_(file) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return file_.size() - pos_; }

  void need(uint64_t n, const char* what) const {
    ESA_CHECK(n <= remaining(), "{}: truncated: {} needs {} bytes at offset {}, only {} left",
              file_.path(), what, n, pos_, remaining());
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, file_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    ESA_CHECK(len <= remaining(), "{}: {} has length {} at offset {}, past the end of the file ({} bytes left)",
              file_.path(), what, len, pos_ - 8, remaining());
    std::string_view s(reinterpret_cast<const char*>(file_.data() + pos_), len);
    pos_ += len;
    return s;
  }
  const uint8_t* skip(uint64_t n, const char* what) {
    need(n, what);
    const uint8_t* p = file_.data() + pos_;
    pos_ += n;
    return p;
  }

 private:
  const MappedFile& file_;
  uint64_t pos_ = 0;
};

void read_value(Cursor& cur, GgufType type, GgufValue& out, const std::string& path,
                const std::string& key, int depth) {
  out.type = type;
  switch (type) {
    case GgufType::uint8: out.u = cur.read<uint8_t>(key.c_str()); out.i = int64_t(out.u); break;
    case GgufType::int8: out.i = cur.read<int8_t>(key.c_str()); out.u = uint64_t(out.i); break;
    case GgufType::uint16: out.u = cur.read<uint16_t>(key.c_str()); out.i = int64_t(out.u); break;
    case GgufType::int16: out.i = cur.read<int16_t>(key.c_str()); out.u = uint64_t(out.i); break;
    case GgufType::uint32: out.u = cur.read<uint32_t>(key.c_str()); out.i = int64_t(out.u); break;
    case GgufType::int32: out.i = cur.read<int32_t>(key.c_str()); out.u = uint64_t(out.i); break;
    case GgufType::uint64: out.u = cur.read<uint64_t>(key.c_str()); out.i = int64_t(out.u); break;
    case GgufType::int64: out.i = cur.read<int64_t>(key.c_str()); out.u = uint64_t(out.i); break;
    case GgufType::float32: out.f = cur.read<float>(key.c_str()); break;
    case GgufType::float64: out.f = cur.read<double>(key.c_str()); break;
    case GgufType::boolean: {
      const uint8_t b = cur.read<uint8_t>(key.c_str());
      ESA_CHECK(b <= 1, "{}: metadata '{}': bool value {} is neither 0 nor 1", path, key, b);
      out.b = b != 0;
      break;
    }
    case GgufType::string: out.str = cur.read_string(key.c_str()); break;
    case GgufType::array: {
      ESA_CHECK(depth < kMaxArrayNesting, "{}: metadata '{}': arrays nested deeper than {}", path, key,
                kMaxArrayNesting);
      const uint32_t elem = cur.read<uint32_t>(key.c_str());
      ESA_CHECK(valid_type(elem), "{}: metadata '{}': unknown array element type {}", path, key, elem);
      out.elem_type = static_cast<GgufType>(elem);
      out.count = cur.read<uint64_t>(key.c_str());
      const size_t esize = scalar_size(out.elem_type);
      // Smallest possible encoding of one element: its scalar size, 8 bytes for a string's
      // length, 12 for a nested array's header. A count beyond remaining/min is a lie.
      const uint64_t min_elem = esize != 0 ? esize : (out.elem_type == GgufType::string ? 8 : 12);
      ESA_CHECK(out.count <= cur.remaining() / min_elem,
                "{}: metadata '{}': array count {} cannot fit in the {} bytes left in the file", path, key,
                out.count, cur.remaining());
      if (esize != 0) {
        out.raw = cur.skip(out.count * esize, key.c_str());
        if (out.elem_type == GgufType::boolean) {
          for (uint64_t j = 0; j < out.count; ++j) {
            ESA_CHECK(out.raw[j] <= 1, "{}: metadata '{}': bool element {} is {}", path, key, j, out.raw[j]);
          }
        }
      } else if (out.elem_type == GgufType::string) {
        out.strings.reserve(out.count);
        for (uint64_t j = 0; j < out.count; ++j) out.strings.push_back(cur.read_string(key.c_str()));
      } else {
        out.items.resize(out.count);
        for (uint64_t j = 0; j < out.count; ++j) read_value(cur, GgufType::array, out.items[j], path, key, depth + 1);
      }
      break;
    }
  }
}

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Element j of a numeric array as double / int64.
double array_elem_float(const GgufValue& v, uint64_t j) {
  const uint8_t* p = v.raw + j * scalar_size(v.elem_type);
  switch (v.elem_type) {
    case GgufType::uint8: return load_le<uint8_t>(p);
    case GgufType::int8: return load_le<int8_t>(p);
    case GgufType::uint16: return load_le<uint16_t>(p);
    case GgufType::int16: return load_le<int16_t>(p);
    case GgufType::uint32: return load_le<uint32_t>(p);
    case GgufType::int32: return load_le<int32_t>(p);
    case GgufType::uint64: return double(load_le<uint64_t>(p));
    case GgufType::int64: return double(load_le<int64_t>(p));
    case GgufType::float32: return load_le<float>(p);
    case GgufType::float64: return load_le<double>(p);
    case GgufType::boolean: return load_le<uint8_t>(p);
    default: return 0.0;
  }
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::uint8: return "uint8";
    case GgufType::int8: return "int8";
    case GgufType::uint16: return "uint16";
    case GgufType::int16: return "int16";
    case GgufType::uint32: return "uint32";
    case GgufType::int32: return "int32";
    case GgufType::float32: return "float32";
    case GgufType::boolean: return "bool";
    case GgufType::string: return "string";
    case GgufType::array: return "array";
    case GgufType::uint64: return "uint64";
    case GgufType::int64: return "int64";
    case GgufType::float64: return "float64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::uint8: case GgufType::int8: case GgufType::uint16: case GgufType::int16:
    case GgufType::uint32: case GgufType::int32: case GgufType::uint64: case GgufType::int64:
      return true;
    default:
      return false;
  }
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  Cursor cur(*file_);
  ESA_CHECK(file_->size() >= 4, "{}: not a GGUF file: only {} bytes", path, file_->size());
  const uint32_t magic = cur.read<uint32_t>("magic");
  ESA_CHECK(magic == 0x46554747u, "{}: not a GGUF file: bad magic 0x{:08x} (expected \"GGUF\")", path, magic);
  version_ = cur.read<uint32_t>("version");
  ESA_CHECK(version_ == 2 || version_ == 3,
            "{}: unsupported GGUF version {} (esa reads versions 2 and 3{})", path, version_,
            version_ > 0xffff ? "; a big-endian file?" : "");
  const uint64_t tensor_count = cur.read<uint64_t>("tensor count");
  const uint64_t kv_count = cur.read<uint64_t>("metadata count");
  // A metadata pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 + 4 + 8 + 4 + 8.
  ESA_CHECK(kv_count <= cur.remaining() / 13, "{}: metadata count {} cannot fit in a {}-byte file (truncated or corrupt)", path,
            kv_count, file_->size());
  ESA_CHECK(tensor_count <= cur.remaining() / 32, "{}: tensor count {} cannot fit in a {}-byte file (truncated or corrupt)", path,
            tensor_count, file_->size());

  metadata_.reserve(kv_count);
  for (uint64_t k = 0; k < kv_count; ++k) {
    std::string_view key = cur.read_string("metadata key");
    ESA_CHECK(!key.empty() && key.size() <= kMaxKeyLength, "{}: metadata pair {} has an invalid key length {}",
              path, k, key.size());
    std::string key_str(key);
    ESA_CHECK(!metadata_index_.contains(key_str), "{}: duplicate metadata key '{}'", path, key_str);
    const uint32_t type = cur.read<uint32_t>("metadata type");
    ESA_CHECK(valid_type(type), "{}: metadata '{}': unknown value type {}", path, key_str, type);
    GgufValue value;
    read_value(cur, static_cast<GgufType>(type), value, path, key_str, 0);
    metadata_index_.emplace(key_str, metadata_.size());
    metadata_.emplace_back(std::move(key_str), std::move(value));
  }

  if (const GgufValue* a = find("general.alignment")) {
    ESA_CHECK(a->is_integer(), "{}: general.alignment has type {}, expected an integer", path,
              gguf_type_name(a->type));
    ESA_CHECK(a->u > 0 && a->u <= (1u << 20) && (a->u & (a->u - 1)) == 0,
              "{}: general.alignment {} is not a power of two in [1, 2^20]", path, a->u);
    alignment_ = a->u;
  }

  tensors_.reserve(tensor_count);
  for (uint64_t t = 0; t < tensor_count; ++t) {
    GgufTensorInfo info;
    info.name = std::string(cur.read_string("tensor name"));
    ESA_CHECK(!info.name.empty(), "{}: tensor {} has an empty name", path, t);
    ESA_CHECK(!tensor_index_.contains(info.name), "{}: duplicate tensor '{}'", path, info.name);
    const uint32_t n_dims = cur.read<uint32_t>("tensor dims");
    ESA_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "{}: tensor '{}' has {} dimensions (expected 1 to {})", path,
              info.name, n_dims, kMaxDims);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = cur.read<uint64_t>("tensor shape");
      ESA_CHECK(dim >= 1 && dim <= (uint64_t(1) << 40), "{}: tensor '{}' dimension {} is {}", path, info.name, d, dim);
      ESA_CHECK(n <= (uint64_t(1) << 50) / dim, "{}: tensor '{}' element count overflows", path, info.name);
      n *= dim;
      info.shape.push_back(int64_t(dim));
    }
    const uint32_t type_id = cur.read<uint32_t>("tensor type");
    const GgmlTypeInfo* ti = ggml_type_info(type_id);
    ESA_CHECK(ti != nullptr, "{}: tensor '{}' has unknown ggml type {}", path, info.name, type_id);
    info.type = static_cast<GgmlType>(type_id);
    ESA_CHECK(info.shape[0] % ti->block_size == 0,
              "{}: tensor '{}' ({}) row length {} is not a multiple of the block size {}", path, info.name,
              ti->name, info.shape[0], ti->block_size);
    info.offset = cur.read<uint64_t>("tensor offset");
    info.n_elements = int64_t(n);
    info.n_bytes = n / uint64_t(ti->block_size) * uint64_t(ti->type_size);
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment.
  data_offset_ = (cur.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (tensor_count > 0) {
    ESA_CHECK(data_offset_ <= file_->size(), "{}: truncated: the data section would start at {} but the file has {} bytes",
              path, data_offset_, file_->size());
  }
  const uint64_t data_size = file_->size() - std::min<uint64_t>(data_offset_, file_->size());
  for (GgufTensorInfo& info : tensors_) {
    ESA_CHECK(info.offset % alignment_ == 0, "{}: tensor '{}' offset {} is not aligned to {}", path, info.name,
              info.offset, alignment_);
    ESA_CHECK(info.offset <= data_size && info.n_bytes <= data_size - info.offset,
              "{}: tensor '{}' ({} bytes at data offset {}) extends past the end of the file "
              "(data section holds {} bytes; truncated?)",
              path, info.name, info.n_bytes, info.offset, data_size);
    info.data = file_->data() + data_offset_ + info.offset;
  }
  // Two tensors over the same bytes: a corrupt or hand-edited file (llama.cpp's writer never does
  // it), and a silent wrong answer if read. Checked in offset order; the tensor list keeps its own.
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& info : tensors_) {
    if (info.n_bytes > 0) by_offset.push_back(&info);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& a = *by_offset[i - 1];
    const GgufTensorInfo& b = *by_offset[i];
    ESA_CHECK(b.offset >= a.offset + a.n_bytes, "{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", path, a.name,
              a.offset, a.offset + a.n_bytes, b.name, b.offset, b.offset + b.n_bytes);
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(std::string(key));
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufValue& GgufFile::get(std::string_view key) const {
  const GgufValue* v = find(key);
  ESA_CHECK(v != nullptr, "{}: missing metadata key '{}'", path(), key);
  return *v;
}

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = get(key);
  ESA_CHECK(v.type == GgufType::string, "{}: metadata '{}' has type {}, expected string", path(), key,
            gguf_type_name(v.type));
  return std::string(v.str);
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue& v = get(key);
  ESA_CHECK(v.is_integer(), "{}: metadata '{}' has type {}, expected an integer", path(), key,
            gguf_type_name(v.type));
  ESA_CHECK(v.type != GgufType::uint64 || v.u <= uint64_t(std::numeric_limits<int64_t>::max()),
            "{}: metadata '{}' value {} is out of range", path(), key, v.u);
  return v.i;
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& v = get(key);
  if (v.is_float()) return v.f;
  ESA_CHECK(v.is_integer(), "{}: metadata '{}' has type {}, expected a number", path(), key,
            gguf_type_name(v.type));
  return double(v.i);
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = get(key);
  ESA_CHECK(v.type == GgufType::boolean, "{}: metadata '{}' has type {}, expected bool", path(), key,
            gguf_type_name(v.type));
  return v.b;
}

std::optional<std::string> GgufFile::find_string(std::string_view key) const {
  if (find(key) == nullptr) return std::nullopt;
  return get_string(key);
}
std::optional<int64_t> GgufFile::find_int(std::string_view key) const {
  if (find(key) == nullptr) return std::nullopt;
  return get_int(key);
}
std::optional<double> GgufFile::find_float(std::string_view key) const {
  if (find(key) == nullptr) return std::nullopt;
  return get_float(key);
}
std::optional<bool> GgufFile::find_bool(std::string_view key) const {
  if (find(key) == nullptr) return std::nullopt;
  return get_bool(key);
}

std::vector<std::string_view> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = get(key);
  ESA_CHECK(v.type == GgufType::array && v.elem_type == GgufType::string,
            "{}: metadata '{}' is not an array of strings", path(), key);
  return v.strings;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue& v = get(key);
  ESA_CHECK(v.type == GgufType::array && scalar_size(v.elem_type) != 0 && v.elem_type != GgufType::float32 &&
                v.elem_type != GgufType::float64,
            "{}: metadata '{}' is not an array of integers", path(), key);
  std::vector<int64_t> out(v.count);
  for (uint64_t j = 0; j < v.count; ++j) {
    const uint8_t* p = v.raw + j * scalar_size(v.elem_type);
    switch (v.elem_type) {
      case GgufType::uint64: out[j] = int64_t(load_le<uint64_t>(p)); break;
      case GgufType::int64: out[j] = load_le<int64_t>(p); break;
      default: out[j] = int64_t(array_elem_float(v, j)); break;  // exact for <= 32-bit ints
    }
  }
  return out;
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue& v = get(key);
  ESA_CHECK(v.type == GgufType::array && scalar_size(v.elem_type) != 0 && v.elem_type != GgufType::boolean,
            "{}: metadata '{}' is not a numeric array", path(), key);
  std::vector<float> out(v.count);
  for (uint64_t j = 0; j < v.count; ++j) out[j] = float(array_elem_float(v, j));
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  ESA_CHECK(t != nullptr, "{}: missing tensor '{}'", path(), name);
  return *t;
}


std::string gguf_value_to_string(const GgufValue& v, size_t max_items) {
  switch (v.type) {
    case GgufType::boolean: return v.b ? "true" : "false";
    case GgufType::float32: case GgufType::float64: return fmt::format("{}", v.f);
    case GgufType::string: {
      std::string s(v.str.substr(0, 120));
      for (char& c : s) if (c == '\n') c = ' ';
      return v.str.size() > 120 ? "\"" + s + "...\"" : "\"" + s + "\"";
    }
    case GgufType::array: {
      std::string s = fmt::format("[{} x {}]", v.count, gguf_type_name(v.elem_type));
      if (v.elem_type == GgufType::string && v.count <= max_items) {
        s += " [";
        for (size_t j = 0; j < v.strings.size(); ++j) s += (j ? ", \"" : "\"") + std::string(v.strings[j]) + "\"";
        s += "]";
      }
      return s;
    }
    case GgufType::uint64: return fmt::format("{}", v.u);
    default: return fmt::format("{}", v.i);
  }
}

}  // namespace esa::io
