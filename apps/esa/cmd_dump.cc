// esa dump: prefill a text and record the score-space queries and the keys per layer to qk.h5
// (lib/calib/qk_dump.h), for `esa calibrate`.
#include <fmt/format.h>
#include <omp.h>

#include "core/atomic_output.h"
#include "calib/qk_dump.h"
#include "commands.h"
#include "core/device.h"
#include "core/error.h"
#include "model/model_files.h"
#include "text/tokenizer.h"

#include "policy_flags.h"

namespace esa::cli {
namespace {

struct DumpCliOptions {
  std::string model;
  std::string layers = "all";
  std::string score_space = "rotated";
  calib::DumpOptions dump;
  int threads = 0;
  std::string device = "cpu";
  bool kv_offload = false;
  bool quiet = false;
};

void run_dump(DumpCliOptions& opt) {
  apply_threads(opt.threads);
  opt.dump.score_space = attention::parse_score_space(opt.score_space);
  opt.dump.progress = !opt.quiet;
  const OutputLock lock(opt.dump.output, {{"--model", opt.model}, {"--text", opt.dump.text_path}});
  const ModelSummary summary = summarize_model(opt.model);
  const auto tok = text::load_tokenizer(opt.model);
  const Placement device = parse_placement(opt.device, opt.kv_offload);
  const LlamaModel model = LlamaModel::load(opt.model, device);
  opt.dump.layers = calib::parse_layer_list(opt.layers, model.config().n_layers);
  io::Provenance prov;
  prov.model = opt.model;
  prov.model_sha256 = summary.sha256;
  prov.device = placement_description(device);
  const calib::DumpSummary s = calib::dump_qk(model, *tok, prov, opt.dump);
  fmt::print("{}: {} tokens in {} sequences, {} layers, score space {} (w = {}), {:.1f} MiB, {:.1f} s ({:.0f} tokens/s)\n",
             opt.dump.output, s.tokens, s.sequences, s.layers, opt.score_space, opt.dump.w,
             double(s.bytes) / (1 << 20), s.seconds, double(s.tokens) / s.seconds);
}

}  // namespace

void register_dump(CLI::App& app) {
  auto opt = std::make_shared<DumpCliOptions>();
  opt->model = default_model_path();
  CLI::App* cmd = app.add_subcommand("dump", "Record per-layer score-space queries and keys of a text to qk.h5");
  cmd->add_option("--model,-m", opt->model, "Model: a .gguf file or a Hugging Face folder")->capture_default_str();
  cmd->add_option("--text,-t", opt->dump.text_path, "Text file (UTF-8) to run through the model")->required();
  cmd->add_option("--tokens", opt->dump.tokens, "Tokens to record (0: the whole text)")->capture_default_str();
  cmd->add_option("--seq-len", opt->dump.seq_len, "Tokens per independent sequence (at most the model's context)")
      ->capture_default_str();
  cmd->add_option("--chunk", opt->dump.chunk, "Prefill chunk")->capture_default_str();
  cmd->add_option("--layers", opt->layers, "Layers to record: all, or a list like 0,4-7")->capture_default_str();
  cmd->add_option("--score-space", opt->score_space,
                  "rotated: queries rotated to position w, keys before RoPE (the long-branch logit); plain: both "
                  "before RoPE. Must match the inference's --score-space")
      ->capture_default_str();
  cmd->add_option("--w", opt->dump.w, "Query position for --score-space rotated: the inference's --w (default: --local)")
      ->capture_default_str();
  cmd->add_flag("--per-head-q", opt->dump.per_head_q, "Also record every query head (/layer_NN/q [T, heads, d])");
  cmd->add_option("--output,-o", opt->dump.output, "Output qk.h5")->required();
  cmd->add_flag("--force", opt->dump.force, "Overwrite an existing output");
  add_device_flags(cmd, opt->device, opt->kv_offload);
  cmd->add_option("--threads", opt->threads, "CPU threads (0: OpenMP's default, all cores)")->capture_default_str();
  cmd->add_flag("--quiet,-q", opt->quiet, "No progress on stderr");
  cmd->callback([opt] { run_dump(*opt); });
}

}  // namespace esa::cli
