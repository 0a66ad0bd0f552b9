// SentencePiece tokenizers through libsentencepiece, from a tokenizer.model (serialized
// ModelProto) or from a GGUF `llama` vocabulary, for which the ModelProto is written here by hand
// in protobuf wire format (the library ships no .pb.h). Reference: sentencepiece_model.proto
// (field numbers below) and llama.cpp's LLAMA_VOCAB_TYPE_SPM tokenizer for the handling of
// special tokens: control tokens are cut out of the text first (when parse_special) and each
// remaining stretch is encoded on its own, so it gets the dummy-prefix space when
// add_space_prefix is set.
#pragma once

#include <memory>
#include <string>

#include "text/tokenizer.h"

namespace esa::text {

/// Serialized ModelProto for a vocabulary without one (GGUF `llama`): pieces (piece, score,
/// type), trainer_spec {model_type BPE, vocab_size, byte_fallback when byte pieces exist,
/// unk/bos/eos/pad ids}, normalizer_spec {name "identity", add_dummy_prefix = add_space_prefix,
/// remove_extra_whitespaces false, escape_whitespaces true}.
std::string sentencepiece_proto_from_spec(const TokenizerSpec& spec);

/// Fills tokens, types, scores, ids and add_space_prefix of `spec` from a serialized ModelProto
/// (a tokenizer.model's bytes); throws esa::Error naming `source` when it does not parse.
void read_sentencepiece_proto(const std::string& proto, const std::string& source,
                              TokenizerSpec& spec);

/// Builds the tokenizer from spec.sentencepiece_proto, or from the vocabulary when that is empty.
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(TokenizerSpec spec);

}  // namespace esa::text
