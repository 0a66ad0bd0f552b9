// esa info: what a model file is — architecture, sizes, RoPE, tensor types, tokenizer, sha256.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "commands.h"
#include "core/device.h"
#include "core/error.h"
#include "model/model_files.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace esa::cli {
namespace {

struct InfoOptions {
  std::string model;
  std::string format = "text";
  bool hash = true;
};

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  return fmt::format("{:.1f} {}", b, units[u]);
}

bool has_hf_tokenizer(const std::string& model_path) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::is_directory(model_path) ? fs::path(model_path) : fs::path(model_path).parent_path();
  return fs::exists(dir / "tokenizer.json") || fs::exists(dir / "tokenizer.model");
}

void run_info(const InfoOptions& opt) {
  ESA_CHECK(opt.format == "text" || opt.format == "json", "--format: expected text or json, got '{}'", opt.format);
  const ModelSummary s = summarize_model(opt.model, opt.hash);
  const ModelConfig& c = s.config;
  // A Hugging Face folder may hold weights without a tokenizer; a tokenizer that is present
  // but broken is still an error.
  std::unique_ptr<text::Tokenizer> tok;
  if (s.format == ModelFormat::gguf || has_hf_tokenizer(opt.model)) tok = text::load_tokenizer(opt.model);
  std::string tokenizer_row = "none (no tokenizer.json or tokenizer.model)";
  nlohmann::json tokenizer_json = nullptr;
  if (tok) {
    const text::TokenizerSpec& ts = tok->spec();
    const char* chat = text::chat_template_name(text::detect_chat_template(ts));
    tokenizer_row = fmt::format("{}, pre-tokenizer {}, {} tokens, bos {}, eos {}, chat template {}",
                                text::tokenizer_model_name(ts.model), ts.pre, tok->vocab_size(), ts.bos_id,
                                ts.eos_id, chat);
    tokenizer_json = {{"model", text::tokenizer_model_name(ts.model)}, {"pre", ts.pre},
                      {"vocab", tok->vocab_size()}, {"bos", ts.bos_id}, {"eos", ts.eos_id}, {"chat_template", chat}};
  }

  std::string mix;
  for (const auto& [name, share] : s.dtypes) {
    mix += fmt::format("{}{} x{} ({})", mix.empty() ? "" : ", ", name, share.tensors, human_bytes(double(share.bytes)));
  }
  std::string rope_scaling = rope_scaling_name(c.rope.scaling);
  if (c.rope.scaling != RopeScaling::none) {
    rope_scaling += fmt::format(" (factor {}, original context {})", c.rope.factor, c.rope.original_context);
  }

  if (opt.format == "json") {
    nlohmann::json j;
    j["path"] = s.path;
    j["format"] = model_format_name(s.format);
    j["architecture"] = architecture_name(c.arch);
    j["name"] = c.name;
    j["layers"] = c.n_layers;
    j["hidden"] = c.hidden;
    j["heads"] = c.n_heads;
    j["kv_heads"] = c.n_kv_heads;
    j["head_dim"] = c.head_dim;
    j["ffn"] = c.ffn;
    j["vocab"] = c.vocab;
    j["context"] = c.context;
    j["rms_eps"] = c.rms_eps;
    j["rope_base"] = c.rope.base;
    j["rope_dim"] = c.rope.dim;
    j["rope_style"] = rope_style_name(c.rope.style);
    j["rope_scaling"] = rope_scaling_name(c.rope.scaling);
    j["tied_embeddings"] = c.tied_embeddings;
    j["qkv_bias"] = c.qkv_bias;
    j["tensors"] = s.n_tensors;
    j["params"] = s.n_params;
    j["bytes"] = s.bytes;
    for (const auto& [name, share] : s.dtypes) {
      j["dtypes"][name] = {{"tensors", share.tensors}, {"elements", share.elements}, {"bytes", share.bytes}};
    }
    j["tokenizer"] = tokenizer_json;
    j["sha256"] = s.sha256;
    fmt::print("{}\n", j.dump(2));
    return;
  }

  auto row = [](const char* key, const std::string& value) { fmt::print("{:<16} {}\n", key, value); };
  row("file", s.path);
  row("format", s.format == ModelFormat::gguf ? fmt::format("gguf v{}", s.gguf_version) : "safetensors");
  row("name", c.name);
  row("architecture", architecture_name(c.arch));
  row("layers", fmt::format("{}", c.n_layers));
  row("hidden", fmt::format("{}", c.hidden));
  row("heads", fmt::format("{}", c.n_heads));
  row("kv heads", fmt::format("{} (GQA group {})", c.n_kv_heads, c.n_heads / c.n_kv_heads));
  row("head dim", fmt::format("{}", c.head_dim));
  row("ffn", fmt::format("{}", c.ffn));
  row("vocab", fmt::format("{}", c.vocab));
  row("context", fmt::format("{}", c.context));
  row("rms eps", fmt::format("{:g}", c.rms_eps));
  row("rope base", fmt::format("{:g}", c.rope.base));
  row("rope", fmt::format("{} dims, {}, scaling {}", c.rope.dim, rope_style_name(c.rope.style), rope_scaling));
  row("embeddings", c.tied_embeddings ? "tied (LM head = token embedding)" : "untied");
  row("qkv bias", c.qkv_bias ? "yes" : "no");
  row("parameters", fmt::format("{} ({:.1f} M) in {} tensors", s.n_params, double(s.n_params) / 1e6, s.n_tensors));
  row("size", human_bytes(double(s.bytes)));
  row("quant mix", mix);
  row("tokenizer", tokenizer_row);
  row("sha256", opt.hash ? s.sha256 : "(skipped, --no-hash)");
}

}  // namespace

void register_info(CLI::App& app) {
  auto opt = std::make_shared<InfoOptions>();
  opt->model = default_model_path();
  CLI::App* cmd = app.add_subcommand("info", "Describe a model: architecture, sizes, RoPE, tensor types, tokenizer, sha256");
  cmd->add_option("--model,-m", opt->model, "Model: a .gguf file or a Hugging Face folder with safetensors")
      ->capture_default_str();
  cmd->add_option("--format", opt->format, "Output format: text or json")->capture_default_str();
  cmd->add_flag("!--no-hash", opt->hash, "Skip hashing the model files (faster on big models)");
  cmd->callback([opt] { run_info(*opt); });
}

}  // namespace esa::cli
