// Model files on disk: which format a path holds and a summary of it (architecture, tensor
// types, size, sha256), as `esa info` prints and every result file records.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"

namespace esa {

enum class ModelFormat { gguf, safetensors };
const char* model_format_name(ModelFormat f);

/// A .gguf file (checked by its magic) or a Hugging Face folder with *.safetensors; throws
/// esa::Error naming the path otherwise.
ModelFormat detect_model_format(const std::string& path);

struct DtypeShare {
  int64_t tensors = 0;
  int64_t elements = 0;
  uint64_t bytes = 0;
};

struct ModelSummary {
  std::string path;
  ModelFormat format = ModelFormat::gguf;
  uint32_t gguf_version = 0;              // GGUF only
  ModelConfig config;
  std::map<std::string, DtypeShare> dtypes;  // by type name ("Q4_1", "F32", "BF16", ...)
  int64_t n_tensors = 0;
  int64_t n_params = 0;
  uint64_t bytes = 0;                     // tensor data bytes
  std::string sha256;                     // file hash; for a folder, of "name hash" lines of its files
  std::vector<std::string> files;         // files the model consists of
};

/// Opens, validates and summarises a model; `with_hash` reads every byte to hash it.
ModelSummary summarize_model(const std::string& path, bool with_hash = true);

}  // namespace esa
