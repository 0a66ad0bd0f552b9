#include "model/model_files.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/file_io.h"
#include "core/sha256.h"
#include "core/sha256_cache.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace esa {
namespace fs = std::filesystem;

const char* model_format_name(ModelFormat f) { return f == ModelFormat::gguf ? "gguf" : "safetensors"; }

ModelFormat detect_model_format(const std::string& path) {
  std::error_code ec;
  ESA_CHECK(fs::exists(path, ec), "{}: no such file or folder", path);
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.ends_with(".safetensors") || name == "model.safetensors.index.json") return ModelFormat::safetensors;
    }
    ESA_FAIL("{}: folder holds no *.safetensors nor model.safetensors.index.json", path);
  }
  // A .gguf name is taken at its word, so that a corrupt GGUF gets the GGUF reader's precise
  // message (bad magic, truncation) rather than "not a model".
  if (path.ends_with(".gguf")) return ModelFormat::gguf;
  if (read_prefix(path, 4) == "GGUF") return ModelFormat::gguf;
  if (path.ends_with(".safetensors")) return ModelFormat::safetensors;
  ESA_FAIL("{}: not a model: neither a GGUF file (magic \"GGUF\") nor a safetensors file or folder", path);
}

namespace {

ModelSummary summarize_gguf(const std::string& path, bool with_hash) {
  io::GgufFile gguf(path);
  ModelSummary s;
  s.path = path;
  s.format = ModelFormat::gguf;
  s.gguf_version = gguf.version();
  s.config = config_from_gguf(gguf);
  for (const io::GgufTensorInfo& t : gguf.tensors()) {
    DtypeShare& share = s.dtypes[io::ggml_type_name(t.type)];
    share.tensors += 1;
    share.elements += t.n_elements;
    share.bytes += t.n_bytes;
    s.n_params += t.n_elements;
    s.bytes += t.n_bytes;
  }
  s.n_tensors = int64_t(gguf.tensors().size());
  s.files = {path};
  if (with_hash) s.sha256 = sha256_file_cached(path);  // cached by (path, size, mtime)
  return s;
}

ModelSummary summarize_safetensors(const std::string& path, bool with_hash) {
  ModelSummary s;
  s.path = path;
  s.format = ModelFormat::safetensors;
  const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  const fs::path config = dir / "config.json";
  ESA_CHECK(fs::exists(config), "{}: missing config.json next to the safetensors weights", dir.string());
  s.config = config_from_hf_json(config.string());
  io::SafetensorsCheckpoint ckpt(dir.string());
  for (const std::string& name : ckpt.names()) {
    const io::SafetensorsTensorInfo& t = ckpt.info(name);
    DtypeShare& share = s.dtypes[io::safetensors_dtype_name(t.dtype)];
    share.tensors += 1;
    share.elements += t.n_elements;
    share.bytes += t.n_bytes;
    s.n_params += t.n_elements;
    s.bytes += t.n_bytes;
  }
  s.n_tensors = int64_t(ckpt.names().size());
  for (const auto& shard : ckpt.shards()) s.files.push_back(shard->path());
  if (!ckpt.index_path().empty()) s.files.push_back(ckpt.index_path());
  s.files.push_back(config.string());
  std::sort(s.files.begin(), s.files.end());
  if (with_hash) {
    std::string lines;
    for (const std::string& f : s.files) lines += fs::path(f).filename().string() + " " + sha256_file_cached(f) + "\n";
    s.sha256 = sha256_hex(lines);
  }
  return s;
}

}  // namespace

ModelSummary summarize_model(const std::string& path, bool with_hash) {
  return detect_model_format(path) == ModelFormat::gguf ? summarize_gguf(path, with_hash)
                                                        : summarize_safetensors(path, with_hash);
}

}  // namespace esa
