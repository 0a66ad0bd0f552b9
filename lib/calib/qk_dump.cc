// esa dump; see qk_dump.h. The recording is an attention policy: it sees exactly the LayerInputs
// the scoring policies see (queries before RoPE, the cache, the RoPE tables), records them in the
// score space with the same function the policies score with (score_space_queries), and answers
// with full attention, so the forward pass itself is the exact model.
#include "calib/qk_dump.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include "attention/projection_file.h"
#include "attention/policies.h"
#include "attention/scoring.h"
#include "attention/selection.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "text/byte_mapping.h"

namespace esa::calib {
namespace {

constexpr int64_t kChunkRows = 256;  // HDF5 chunk: 256 tokens (96 KiB of fp16 for SmolLM2's 192 dims)
constexpr int kDeflate = 1;          // fp16 activations barely compress; level 1 keeps the dump fast

struct LayerDatasets {
  io::H5File::Appender q_folded, k;
  std::optional<io::H5File::Appender> q;
};

// The dump stores float16: a value that is not finite, or past float16's range (it would become
// inf), makes every fit on the file garbage; refused with where it came from. `x`: T rows of
// `width` values, row t at position first + t.
void check_recordable(const float* x, int64_t T, int64_t width, int64_t layer, const char* what, int64_t first) {
  for (int64_t i = 0; i < T * width; ++i) {
    if (std::isfinite(x[i]) && std::fabs(x[i]) <= 65504.0f) continue;
    ESA_FAIL("dump: layer {}'s {} at position {} is {} (float16 holds at most 65504: the model's activations "
             "overflow)", layer, what, first + i / width, x[i]);
  }
}

class RecordingPolicy final : public attention::Policy {
 public:
  RecordingPolicy(io::H5File& file, const ModelConfig& config, const DumpOptions& o)
      : Policy(attention::PolicyOptions{}), options_(o), hkv_(config.n_kv_heads) {
    for (int64_t l : o.layers) {
      const std::string g = attention::layer_group(l);
      LayerDatasets d{io::H5File::Appender(file, g + "/q_folded", {config.n_kv_heads, config.head_dim},
                                           io::H5Float::f16, kChunkRows, kDeflate),
                      io::H5File::Appender(file, g + "/k", {config.n_kv_heads, config.head_dim}, io::H5Float::f16,
                                           kChunkRows, kDeflate),
                      std::nullopt};
      if (o.per_head_q) {
        d.q.emplace(file, g + "/q", std::vector<int64_t>{config.n_heads, config.head_dim}, io::H5Float::f16, kChunkRows,
                    kDeflate);
      }
      layers_.emplace(l, std::move(d));
    }
  }

  attention::Selection select(const attention::LayerInputs& in) override {
    auto it = layers_.find(in.layer);
    if (it != layers_.end()) {
      const int64_t T = in.q.shape[0];
      const Tensor qf = attention::score_space_queries(in, hkv_, options_.score_space, options_.w);
      const TensorView keys = in.cache->keys(in.layer);
      const float* chunk_keys = keys.data + in.chunk_begin() * keys.shape[1] * keys.shape[2];
      check_recordable(qf.data(), T, qf.numel() / std::max<int64_t>(T, 1), in.layer, "query", in.chunk_begin());
      check_recordable(chunk_keys, T, keys.shape[1] * keys.shape[2], in.layer, "key", in.chunk_begin());
      it->second.q_folded.append(qf.data(), T);
      it->second.k.append(chunk_keys, T);
      if (it->second.q) {
        if (options_.score_space == attention::ScoreSpace::rotated) {
          const Tensor qr = attention::rotate_to_position(in.q, options_.w, *in.rope, in.angles);
          it->second.q->append(qr.data(), T);
        } else {
          it->second.q->append(in.q.data, T);
        }
      }
    }
    return attention::Selection{0, {{}}};  // the whole cache, causally: exact attention
  }

 private:
  const DumpOptions& options_;
  int64_t hkv_;
  std::map<int64_t, LayerDatasets> layers_;
};

}  // namespace

std::vector<int64_t> parse_layer_list(const std::string& spec, int64_t n_layers) {
  std::vector<int64_t> out;
  if (spec == "all") {
    for (int64_t l = 0; l < n_layers; ++l) out.push_back(l);
    return out;
  }
  auto number = [&](const std::string& s) {
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    ESA_CHECK(used == s.size() && !s.empty() && v >= 0, "--layers '{}': '{}' is not a layer number", spec, s);
    ESA_CHECK(v < n_layers, "--layers '{}': layer {} does not exist (the model has {} layers, 0-{})", spec, v, n_layers,
              n_layers - 1);
    return v;
  };
  size_t pos = 0;
  while (pos <= spec.size()) {
    const size_t comma = std::min(spec.find(',', pos), spec.size());
    const std::string item = spec.substr(pos, comma - pos);
    const size_t dash = item.find('-');
    const int64_t a = number(dash == std::string::npos ? item : item.substr(0, dash));
    const int64_t b = dash == std::string::npos ? a : number(item.substr(dash + 1));
    ESA_CHECK(a <= b, "--layers '{}': empty range {}", spec, item);
    for (int64_t l = a; l <= b; ++l) out.push_back(l);
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

DumpSummary dump_qk(const LlamaModel& model, const text::Tokenizer& tokenizer, const io::Provenance& model_info,
                    const DumpOptions& o) {
  const ModelConfig& c = model.config();
  ESA_CHECK(o.tokens >= 0, "--tokens must be >= 0, got {}", o.tokens);
  ESA_CHECK(o.seq_len >= 2, "--seq-len must be >= 2, got {}", o.seq_len);
  ESA_CHECK(o.seq_len <= c.context, "--seq-len {} exceeds the model's trained context of {} tokens", o.seq_len,
            c.context);
  ESA_CHECK(o.chunk >= 1, "--chunk must be >= 1, got {}", o.chunk);
  ESA_CHECK(o.w >= 0, "--w must be >= 0, got {}", o.w);
  DumpOptions opt = o;
  if (opt.layers.empty()) opt.layers = parse_layer_list("all", c.n_layers);
  for (int64_t l : opt.layers) ESA_CHECK(l >= 0 && l < c.n_layers, "layer {} out of range (model has {})", l, c.n_layers);

  AtomicOutput out(opt.output, opt.force);
  AtomicOutput::remove_stale(opt.output);  // the temporary file of a killed earlier run
  const std::string text = read_file(opt.text_path, uint64_t(1) << 32);
  ESA_CHECK(!text.empty(), "{}: empty text", opt.text_path);
  text::check_utf8(text, opt.text_path);
  std::vector<int32_t> ids = tokenizer.encode(text, /*add_special=*/false, /*parse_special=*/false);
  const bool bos = tokenizer.spec().add_bos && tokenizer.spec().bos_id >= 0;
  // Each sequence is [BOS] + the next text tokens; count what the text can give.
  const int64_t per_seq = o.seq_len - (bos ? 1 : 0);
  const int64_t available = int64_t(ids.size()) + (bos ? (int64_t(ids.size()) + per_seq - 1) / per_seq : 0);
  const int64_t total = opt.tokens == 0 ? available : opt.tokens;
  ESA_CHECK(total <= available, "{}: {} tokens with this model's tokenizer, fewer than --tokens {} (pass --tokens 0 "
            "for all of it, or a longer text)", opt.text_path, available, opt.tokens);

  DumpSummary summary;
  std::vector<int32_t> all_tokens, all_positions;
  {
    io::H5File file = io::H5File::create(out.temp_path());
    io::Provenance prov = model_info;
    prov.format = "esa-qk";
    io::write_provenance(file, prov);
    RecordingPolicy recorder(file, c, opt);
    Progress progress("dump", total, "tokens", opt.progress);
    size_t next = 0;
    while (summary.tokens < total) {
      const int64_t len = std::min(opt.seq_len, total - summary.tokens);
      std::vector<int32_t> seq;
      if (bos) seq.push_back(tokenizer.spec().bos_id);
      while (int64_t(seq.size()) < len) seq.push_back(ids[next++]);
      KvCache cache = model.make_cache();
      cache.reserve(len);  // checked against --max-memory before the prefill
      ForwardOptions f;
      f.chunk = opt.chunk;
      f.policy = &recorder;
      for (int64_t p0 = 0; p0 < len; p0 += opt.chunk) {
        const int64_t n = std::min(opt.chunk, len - p0);
        model.forward(std::span<const int32_t>(seq).subspan(size_t(p0), size_t(n)), cache, f);
        progress.advance(n);
      }
      for (int64_t p = 0; p < len; ++p) {
        all_tokens.push_back(seq[size_t(p)]);
        all_positions.push_back(int32_t(p));
      }
      summary.tokens += len;
      summary.sequences += 1;
    }
    progress.finish();
    summary.seconds = progress.seconds();
    file.write("/tokens", std::span<const int32_t>(all_tokens), {summary.tokens});
    file.write("/positions", std::span<const int32_t>(all_positions), {summary.tokens});
    file.set_attr("/", "text", opt.text_path);
    file.set_attr("/", "text_sha256", sha256_hex(text));
    file.set_attr("/", "score_space", attention::score_space_name(opt.score_space));
    file.set_attr("/", "w", opt.w);
    file.set_attr("/", "seq_len", opt.seq_len);
    file.set_attr("/", "n_tokens", summary.tokens);
    file.set_attr("/", "n_sequences", summary.sequences);
    file.set_attr("/", "layers", std::span<const int64_t>(opt.layers));
    file.set_attr("/", "per_head_q", int64_t(opt.per_head_q));
    file.set_attr("/", "n_layers", c.n_layers);
    file.set_attr("/", "n_heads", c.n_heads);
    file.set_attr("/", "n_kv_heads", c.n_kv_heads);
    file.set_attr("/", "head_dim", c.head_dim);
    file.set_attr("/", "architecture", architecture_name(c.arch));
    file.close();
  }
  out.commit();
  summary.layers = int64_t(opt.layers.size());
  summary.bytes = std::filesystem::file_size(opt.output);
  return summary;
}

}  // namespace esa::calib
