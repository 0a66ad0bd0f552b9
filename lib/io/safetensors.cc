// Safetensors reader: header validation, dtype conversion and sharded-folder resolution.
// Reference: the format section of https://github.com/huggingface/safetensors (README) and its
// Rust `Metadata::validate`; folder resolution follows transformers' `from_pretrained` for local
// folders (model.safetensors, then model.safetensors.index.json).
#include "io/safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/file_io.h"
#include "core/half.h"

namespace esa::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct DtypeEntry {
  SafetensorsDtype dtype;
  const char* name;
  size_t size;
};
constexpr std::array<DtypeEntry, 13> kDtypes = {{
    {SafetensorsDtype::f64, "F64", 8},
    {SafetensorsDtype::f32, "F32", 4},
    {SafetensorsDtype::f16, "F16", 2},
    {SafetensorsDtype::bf16, "BF16", 2},
    {SafetensorsDtype::i64, "I64", 8},
    {SafetensorsDtype::i32, "I32", 4},
    {SafetensorsDtype::i16, "I16", 2},
    {SafetensorsDtype::i8, "I8", 1},
    {SafetensorsDtype::u64, "U64", 8},
    {SafetensorsDtype::u32, "U32", 4},
    {SafetensorsDtype::u16, "U16", 2},
    {SafetensorsDtype::u8, "U8", 1},
    {SafetensorsDtype::boolean, "BOOL", 1},
}};

const DtypeEntry& dtype_entry(SafetensorsDtype dtype) {
  for (const auto& e : kDtypes) {
    if (e.dtype == dtype) return e;
  }
  assert(false && "unhandled SafetensorsDtype");
  return kDtypes[0];
}

std::string known_dtypes() {
  std::string out;
  for (const auto& e : kDtypes) {
    if (!out.empty()) out += ", ";
    out += e.name;
  }
  return out;
}

/// Quotes a name for a one-line message: control characters (a newline inside a JSON key) are
/// escaped so the message stays on one line.
std::string quote_name(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

/// A JSON value abbreviated for a message: its type and, for scalars, its text.
std::string describe(const Json& v) {
  if (v.is_object() || v.is_array()) return json_excerpt(v);
  return fmt::format("{} ({})", json_excerpt(v), v.type_name());
}

/// A JSON integer >= 0 as uint64, or std::nullopt (negative, fractional, not a number).
std::optional<uint64_t> as_unsigned(const Json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const auto i = v.get<int64_t>();
    if (i >= 0) return static_cast<uint64_t>(i);
  }
  return std::nullopt;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // tensors may be unaligned in the mapping
  return v;
}

}  // namespace

const char* safetensors_dtype_name(SafetensorsDtype dtype) { return dtype_entry(dtype).name; }
size_t safetensors_dtype_size(SafetensorsDtype dtype) { return dtype_entry(dtype).size; }

bool safetensors_dtype_is_float(SafetensorsDtype dtype) {
  return dtype == SafetensorsDtype::f64 || dtype == SafetensorsDtype::f32 ||
         dtype == SafetensorsDtype::f16 || dtype == SafetensorsDtype::bf16;
}

std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name) {
  for (const auto& e : kDtypes) {
    if (name == e.name) return e.dtype;
  }
  return std::nullopt;
}

std::vector<float> safetensors_to_float(const SafetensorsTensorInfo& t, const std::string& source) {
  ESA_CHECK(safetensors_dtype_is_float(t.dtype),
            "{}: tensor {} has dtype {}; only F32, F16, BF16 and F64 convert to float", source,
            quote_name(t.name), safetensors_dtype_name(t.dtype));
  assert(t.n_bytes == static_cast<uint64_t>(t.n_elements) * safetensors_dtype_size(t.dtype));
  const auto n = static_cast<size_t>(t.n_elements);
  std::vector<float> out(n);
  const uint8_t* p = t.data;
  switch (t.dtype) {
    case SafetensorsDtype::f32:
      if (n > 0) std::memcpy(out.data(), p, n * sizeof(float));
      break;
    case SafetensorsDtype::f16:
      for (size_t i = 0; i < n; ++i) out[i] = fp16_to_float(load<uint16_t>(p + 2 * i));
      break;
    case SafetensorsDtype::bf16:
      for (size_t i = 0; i < n; ++i) out[i] = bf16_to_float(load<uint16_t>(p + 2 * i));
      break;
    case SafetensorsDtype::f64:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load<double>(p + 8 * i));
      break;
    default:
      assert(false);
  }
  return out;
}

// ---- SafetensorsFile -----------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const uint64_t size = file_->size();
  ESA_CHECK(size >= 8, "{}: file is {} bytes, too short for the 8-byte header length", path, size);
  header_size_ = read_u64_le(file_->data());
  ESA_CHECK(header_size_ <= kMaxHeaderBytes,
            "{}: header length {} exceeds the {} MB cap (not a safetensors file, or corrupt)", path,
            header_size_, kMaxHeaderBytes >> 20);
  ESA_CHECK(header_size_ <= size - 8,
            "{}: header length {} exceeds the file ({} bytes after the 8-byte length; truncated?)",
            path, header_size_, size - 8);
  ESA_CHECK(header_size_ >= 2, "{}: header length {} is too short for a JSON object", path,
            header_size_);

  const auto* begin = reinterpret_cast<const char*>(file_->data() + 8);
  std::vector<std::string> order;  // the header's order: the tie-break for equal offsets
  const Json header = parse_json(std::string_view(begin, header_size_), path + ": header", &order);
  ESA_CHECK(header.is_object(), "{}: header is a JSON {}, expected an object", path,
            header.type_name());

  const uint64_t data_size = size - data_offset();
  const uint8_t* data = file_->data() + data_offset();
  for (const std::string& key : order) {
    const Json& value = header.at(key);
    if (key == "__metadata__") {
      ESA_CHECK(value.is_object(), "{}: __metadata__ is {}, expected an object of strings", path,
                describe(value));
      for (const auto& [mkey, mvalue] : value.items()) {
        ESA_CHECK(mvalue.is_string(), "{}: __metadata__[{}] is {}, expected a string", path,
                  quote_name(mkey), describe(mvalue));
        metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    const std::string where = fmt::format("{}: tensor {}", path, quote_name(key));
    ESA_CHECK(value.is_object(), "{}: entry is {}, expected an object with dtype, shape and data_offsets",
              where, describe(value));
    SafetensorsTensorInfo t;
    t.name = key;

    // dtype
    const auto dtype_it = value.find("dtype");
    ESA_CHECK(dtype_it != value.end(), "{}: missing 'dtype'", where);
    ESA_CHECK(dtype_it->is_string(), "{}: 'dtype' is {}, expected a string", where, describe(*dtype_it));
    const auto dtype_name = dtype_it->get<std::string>();
    const auto dtype = parse_safetensors_dtype(dtype_name);
    ESA_CHECK(dtype.has_value(), "{}: unknown dtype {} (esa reads {})", where, quote_name(dtype_name),
              known_dtypes());
    t.dtype = *dtype;

    // shape: non-negative integers whose product fits in int64.
    const auto shape_it = value.find("shape");
    ESA_CHECK(shape_it != value.end(), "{}: missing 'shape'", where);
    ESA_CHECK(shape_it->is_array(), "{}: 'shape' is {}, expected an array of integers", where,
              describe(*shape_it));
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t d = 0; d < shape_it->size(); ++d) {
      const Json& dim = (*shape_it)[d];
      const auto u = as_unsigned(dim);
      ESA_CHECK(u.has_value(), "{}: shape[{}] is {}, expected a non-negative integer", where, d,
                describe(dim));
      ESA_CHECK(*u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                "{}: shape[{}] is {}, larger than 2^63-1", where, d, *u);
      t.shape.push_back(static_cast<int64_t>(*u));
      overflow = overflow || __builtin_mul_overflow(numel, *u, &numel);
    }
    ESA_CHECK(!overflow && numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "{}: shape [{}] has more than 2^63-1 elements (overflow)", where,
              fmt::join(t.shape, ", "));
    t.n_elements = static_cast<int64_t>(numel);
    uint64_t expected_bytes = 0;
    ESA_CHECK(!__builtin_mul_overflow(numel, safetensors_dtype_size(t.dtype), &expected_bytes),
              "{}: shape [{}] of {} overflows 64-bit byte sizes", where, fmt::join(t.shape, ", "),
              dtype_name);

    // data_offsets: [begin, end] inside the data section, spanning exactly numel * size bytes.
    const auto off_it = value.find("data_offsets");
    ESA_CHECK(off_it != value.end(), "{}: missing 'data_offsets'", where);
    ESA_CHECK(off_it->is_array() && off_it->size() == 2,
              "{}: 'data_offsets' is {}, expected [begin, end]", where, describe(*off_it));
    const auto off_begin = as_unsigned((*off_it)[0]);
    const auto off_end = as_unsigned((*off_it)[1]);
    ESA_CHECK(off_begin.has_value() && off_end.has_value(),
              "{}: data_offsets {} must be two non-negative integers", where,
              json_excerpt(*off_it));
    ESA_CHECK(*off_begin <= *off_end, "{}: data_offsets [{}, {}] end before they begin", where,
              *off_begin, *off_end);
    ESA_CHECK(*off_end <= data_size,
              "{}: data_offsets [{}, {}] run past the end of the data section ({} bytes)", where,
              *off_begin, *off_end, data_size);
    t.offset = *off_begin;
    t.n_bytes = *off_end - *off_begin;
    ESA_CHECK(t.n_bytes == expected_bytes,
              "{}: data_offsets [{}, {}] span {} bytes, expected {} for shape [{}] of {}", where,
              *off_begin, *off_end, t.n_bytes, expected_bytes, fmt::join(t.shape, ", "), dtype_name);
    t.data = data + t.offset;
    tensors_.push_back(std::move(t));
  }

  // File order; stable so that equal offsets (empty tensors) keep the header's order.
  std::stable_sort(tensors_.begin(), tensors_.end(),
                   [](const auto& a, const auto& b) { return a.offset < b.offset; });
  const SafetensorsTensorInfo* previous = nullptr;
  for (const auto& t : tensors_) {
    if (t.n_bytes == 0) continue;
    ESA_CHECK(previous == nullptr || t.offset >= previous->offset + previous->n_bytes,
              "{}: tensors {} [{}, {}) and {} [{}, {}) overlap", path, quote_name(previous->name),
              previous->offset, previous->offset + previous->n_bytes, quote_name(t.name), t.offset,
              t.offset + t.n_bytes);
    previous = &t;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& t : tensors_) out.push_back(t.name);
  return out;
}

const SafetensorsTensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const SafetensorsTensorInfo& SafetensorsFile::info(std::string_view name) const {
  const auto* t = find(name);
  ESA_CHECK(t != nullptr, "{}: no tensor {} ({} tensors in the file)", path(), quote_name(name),
            tensors_.size());
  return *t;
}

std::vector<float> SafetensorsFile::to_float(std::string_view name) const {
  return safetensors_to_float(info(name), path());
}

int64_t SafetensorsFile::parameter_count() const {
  int64_t total = 0;
  for (const auto& t : tensors_) total += t.n_elements;
  return total;
}

// ---- SafetensorsCheckpoint -----------------------------------------------------------------

namespace {

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The index JSON; a size cap keeps a wrong path from being read whole.
Json read_index(const std::string& path) {
  return read_json_file(path, SafetensorsFile::kMaxHeaderBytes);
}

/// A shard name must stay inside the checkpoint's folder.
bool is_inside(const std::string& shard) {
  const fs::path p(shard);
  if (shard.empty() || p.is_absolute() || p.has_root_name() || p.has_root_directory()) return false;
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& path) : path_(path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  ESA_CHECK(fs::exists(status), "{}: no such file or directory", path);

  std::string single;
  if (fs::is_directory(status)) {
    const fs::path dir(path);
    if (fs::is_regular_file(dir / kSingleName)) {
      single = (dir / kSingleName).string();
    } else if (fs::is_regular_file(dir / kIndexName)) {
      index_path_ = (dir / kIndexName).string();
    } else {
      std::vector<std::string> found;
      for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.is_regular_file() && ends_with(entry.path().filename().string(), ".safetensors")) {
          found.push_back(entry.path().filename().string());
        }
      }
      std::sort(found.begin(), found.end());
      ESA_CHECK(!found.empty(), "{}: no {}, {} or other *.safetensors file in the folder", path,
                kSingleName, kIndexName);
      ESA_CHECK(found.size() == 1,
                "{}: {} *.safetensors files ({}) but no {} saying which tensors each holds", path,
                found.size(), fmt::join(found, ", "), kIndexName);
      single = (dir / found[0]).string();
    }
  } else if (ends_with(path, ".json")) {
    index_path_ = path;
  } else {
    single = path;
  }

  if (!single.empty()) {
    shards_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& t : shards_[0]->tensors()) {
      names_.push_back(t.name);
      entries_.emplace(t.name, Entry{0, &t});
    }
    return;
  }

  // Sharded: {"metadata": {...}, "weight_map": {tensor: shard file}}.
  const Json index = read_index(index_path_);
  ESA_CHECK(index.is_object(), "{}: index is a JSON {}, expected an object", index_path_, index.type_name());
  const auto map_it = index.find("weight_map");
  ESA_CHECK(map_it != index.end(), "{}: missing 'weight_map' (expected {{tensor: shard file}})", index_path_);
  ESA_CHECK(map_it->is_object(), "{}: 'weight_map' is {}, expected an object {{tensor: shard file}}",
            index_path_, describe(*map_it));
  ESA_CHECK(!map_it->empty(), "{}: 'weight_map' is empty", index_path_);

  std::map<std::string, std::vector<std::string>> by_shard;  // sorted by file name
  for (const auto& [tensor, shard] : map_it->items()) {
    ESA_CHECK(shard.is_string(), "{}: weight_map[{}] is {}, expected a shard file name", index_path_,
              quote_name(tensor), describe(shard));
    const auto name = shard.get<std::string>();
    ESA_CHECK(is_inside(name), "{}: weight_map[{}] names shard {}, which is not a file inside the folder",
              index_path_, quote_name(tensor), quote_name(name));
    by_shard[name].push_back(tensor);
  }

  const fs::path dir = fs::path(index_path_).parent_path();
  for (const auto& [shard_name, tensors] : by_shard) {
    const std::string shard_path = (dir / shard_name).string();
    ESA_CHECK(fs::is_regular_file(shard_path, ec),
              "{}: shard {} (holding {} tensors, e.g. {}) not found at {}", index_path_,
              quote_name(shard_name), tensors.size(), quote_name(tensors.front()), shard_path);
    const size_t shard = shards_.size();
    shards_.push_back(std::make_unique<SafetensorsFile>(shard_path));
    const SafetensorsFile& file = *shards_.back();
    std::set<std::string_view> wanted;
    for (const auto& tensor : tensors) {
      ESA_CHECK(file.find(tensor) != nullptr, "{}: tensor {} is mapped to shard {}, which does not hold it",
                index_path_, quote_name(tensor), quote_name(shard_name));
      wanted.insert(tensor);
    }
    for (const auto& t : file.tensors()) {
      if (wanted.count(t.name) == 0) continue;
      names_.push_back(t.name);
      entries_.emplace(t.name, Entry{shard, &t});
    }
  }
}

const SafetensorsTensorInfo* SafetensorsCheckpoint::find(std::string_view name) const {
  const auto it = entries_.find(std::string(name));
  return it == entries_.end() ? nullptr : it->second.info;
}

const SafetensorsTensorInfo& SafetensorsCheckpoint::info(std::string_view name) const {
  const auto* t = find(name);
  ESA_CHECK(t != nullptr, "{}: no tensor {} in the checkpoint ({} tensors)",
            index_path_.empty() ? shards_[0]->path() : index_path_, quote_name(name), names_.size());
  return *t;
}

const SafetensorsFile& SafetensorsCheckpoint::file_of(std::string_view name) const {
  info(name);  // throws when absent
  return *shards_[entries_.find(std::string(name))->second.shard];
}

std::vector<float> SafetensorsCheckpoint::to_float(std::string_view name) const {
  return safetensors_to_float(info(name), file_of(name).path());
}

int64_t SafetensorsCheckpoint::parameter_count() const {
  int64_t total = 0;
  for (const auto& [name, entry] : entries_) total += entry.info->n_elements;
  return total;
}

}  // namespace esa::io
