// Byte-level BPE (GPT-2, SmolLM, Llama-3, Qwen2 vocabularies). Reference: tokenizers'
// models/bpe (model.rs, word.rs) with the ByteLevel pre-tokenizer and decoder.
//
// encode: added tokens are cut out first (added_tokens.h); the rest is split into words by the
// pre-tokenizer rule set (pretokenizer.h); each word's bytes start as one symbol per byte (the
// vocabulary entry of its GPT-2 mapped character) and the adjacent pair of lowest merge rank is
// merged, leftmost first on ties, until no pair has a rank (word.rs merge_all). Words are cached.
// decode: each id's piece is mapped back to bytes (pieces with characters outside the byte
// alphabet, like most special tokens, are taken as their UTF-8 text) and the bytes joined;
// an invalid UTF-8 sequence is kept as bytes where tokenizers would write U+FFFD.
#pragma once

#include <memory>

#include "text/tokenizer.h"

namespace esa::text {

/// Builds a byte-level BPE tokenizer; throws esa::Error naming spec.source when a merge names
/// an unknown piece or the pre-tokenizer is unknown. Expects a spec checked by make_tokenizer.
std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerSpec spec);

}  // namespace esa::text
