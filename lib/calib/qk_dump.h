// `esa dump`: prefill a text through the model in independent sequences and record, per layer,
// the queries and keys the ESA scorer sees, for `esa calibrate` (PAPER.md section 3).
//
// qk.h5 layout (ARCHITECTURE.md, Files):
//   /tokens [T] int32          token ids, sequences concatenated
//   /positions [T] int32       position inside its sequence (a sequence starts where it is 0)
//   /layer_NN/q_folded [T, Hkv, d] fp16   the GQA-folded query in the score space (rotated to w,
//                                         or before RoPE for `plain`): what q' is fitted on
//   /layer_NN/k [T, Hkv, d] fp16          the key before RoPE: what k' is fitted on
//   /layer_NN/q [T, Hq, d] fp16           per-head queries in the score space (--per-head-q)
// Datasets are chunked (256 rows), shuffled and deflated, appended as the prefill goes (memory is
// bounded by one sequence). Root attributes: format "esa-qk", the provenance (io/provenance.h),
// text, text_sha256, score_space, w, seq_len, n_tokens, n_sequences, layers, n_layers, n_heads,
// n_kv_heads, head_dim, architecture. The file appears under its name only when complete.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/policy.h"
#include "io/provenance.h"
#include "engine/llama.h"
#include "text/tokenizer.h"

namespace esa::calib {

struct DumpOptions {
  std::string text_path;
  std::string output;
  bool force = false;                 // overwrite an existing output
  int64_t tokens = 50000;             // tokens to record; 0: the whole text
  int64_t seq_len = 4096;             // tokens per independent sequence
  int64_t chunk = 512;                // prefill chunk
  std::vector<int64_t> layers;        // empty: every layer
  attention::ScoreSpace score_space = attention::ScoreSpace::rotated;
  int64_t w = 2048;                   // query position for `rotated` (= --local at inference)
  bool per_head_q = false;
  bool progress = true;
};

struct DumpSummary {
  int64_t tokens = 0, sequences = 0, layers = 0;
  double seconds = 0;
  uint64_t bytes = 0;
};

/// "all" or a comma list of layers and ranges ("0,4-7,29"); each must be < n_layers.
std::vector<int64_t> parse_layer_list(const std::string& spec, int64_t n_layers);

/// Runs the dump; `model_info` carries the model path and sha256 for the provenance.
DumpSummary dump_qk(const LlamaModel& model, const text::Tokenizer& tokenizer, const io::Provenance& model_info,
                    const DumpOptions& options);

}  // namespace esa::calib
