#include "support/gguf_writer.h"

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/half.h"

namespace esa::test {
namespace {

template <typename T>
void put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

std::string kv_header(const std::string& key, uint32_t type) {
  std::string out;
  put_string(out, key);
  put<uint32_t>(out, type);
  return out;
}

}  // namespace

void GgufWriter::add_u32(const std::string& key, uint32_t v) { auto s = kv_header(key, 4); put(s, v); kvs_.push_back(s); }
void GgufWriter::add_i32(const std::string& key, int32_t v) { auto s = kv_header(key, 5); put(s, v); kvs_.push_back(s); }
void GgufWriter::add_u64(const std::string& key, uint64_t v) { auto s = kv_header(key, 10); put(s, v); kvs_.push_back(s); }
void GgufWriter::add_f32(const std::string& key, float v) { auto s = kv_header(key, 6); put(s, v); kvs_.push_back(s); }
void GgufWriter::add_bool(const std::string& key, bool v) { auto s = kv_header(key, 7); put<uint8_t>(s, v); kvs_.push_back(s); }
void GgufWriter::add_string(const std::string& key, const std::string& v) {
  auto s = kv_header(key, 8);
  put_string(s, v);
  kvs_.push_back(s);
}
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  auto s = kv_header(key, 9);
  put<uint32_t>(s, 8);
  put<uint64_t>(s, v.size());
  for (const auto& x : v) put_string(s, x);
  kvs_.push_back(s);
}
void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  auto s = kv_header(key, 9);
  put<uint32_t>(s, 5);
  put<uint64_t>(s, v.size());
  for (int32_t x : v) put(s, x);
  kvs_.push_back(s);
}
void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& v) {
  auto s = kv_header(key, 9);
  put<uint32_t>(s, 6);
  put<uint64_t>(s, v.size());
  for (float x : v) put(s, x);
  kvs_.push_back(s);
}
void GgufWriter::add_raw(const std::string& key, uint32_t type, const std::string& value_bytes) {
  kvs_.push_back(kv_header(key, type) + value_bytes);
}
void GgufWriter::add_tensor(const std::string& name, std::vector<uint64_t> shape, io::GgmlType type, std::string data) {
  tensors_.push_back({name, std::move(shape), type, std::move(data)});
}

std::string GgufWriter::build(uint32_t version, uint64_t alignment, std::vector<size_t>* offset_fields) const {
  std::string out = "GGUF";
  put<uint32_t>(out, version);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kvs_.size());
  for (const auto& kv : kvs_) out += kv;
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, uint32_t(t.shape.size()));
    for (uint64_t d : t.shape) put<uint64_t>(out, d);
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    if (offset_fields != nullptr) offset_fields->push_back(out.size());
    put<uint64_t>(out, offset);
    offset += (t.data.size() + alignment - 1) / alignment * alignment;
  }
  out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
  for (const auto& t : tensors_) {
    out += t.data;
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
  }
  return out;
}

namespace {

std::string f32_bytes(size_t n, float scale) {
  std::string out;
  for (size_t i = 0; i < n; ++i) put<float>(out, scale * float((i * 7919) % 17) / 17.0f - scale / 2);
  return out;
}

std::string q8_0_bytes(size_t n) {
  std::string out;
  for (size_t b = 0; b < n / 32; ++b) {
    put<uint16_t>(out, float_to_fp16(0.01f * float(b % 5 + 1)));
    for (int j = 0; j < 32; ++j) put<int8_t>(out, int8_t((b * 31 + j * 7) % 255 - 127));
  }
  return out;
}

// GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 + k.
std::vector<std::string> byte_tokens() {
  std::vector<std::string> tokens;
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const int cp = printable ? b : 256 + extra++;
    std::string s;
    if (cp < 0x80) s += char(cp);
    else { s += char(0xc0 | (cp >> 6)); s += char(0x80 | (cp & 0x3f)); }
    tokens.push_back(s);
  }
  return tokens;
}

}  // namespace

std::string tiny_llama_gguf(const std::string& drop_tensor, const std::string& narrow_tensor, int extra_tokens) {
  const uint64_t hidden = 32, ffn = 64, heads = 4, kv_heads = 2, head_dim = 8, layers = 2;
  std::vector<std::string> tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  std::vector<int32_t> types = {3, 3, 3};
  for (const auto& t : byte_tokens()) {
    tokens.push_back(t);
    types.push_back(1);
  }
  const std::vector<std::string> merges = {"Ġ t", "h e", "Ġt he", "i n", "Ġ a"};
  for (const auto& m : merges) {
    tokens.push_back(m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1));
    types.push_back(1);
  }
  const uint64_t vocab = tokens.size();
  for (int i = 0; i < extra_tokens; ++i) {  // token ids past the embedding's rows
    tokens.push_back("<extra_" + std::to_string(i) + ">");
    types.push_back(1);
  }

  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.name", "tiny-test-llama");
  w.add_u32("general.alignment", 32);
  w.add_u32("llama.block_count", layers);
  w.add_u32("llama.context_length", 256);
  w.add_u32("llama.embedding_length", hidden);
  w.add_u32("llama.feed_forward_length", ffn);
  w.add_u32("llama.attention.head_count", heads);
  w.add_u32("llama.attention.head_count_kv", kv_heads);
  w.add_f32("llama.rope.freq_base", 10000.0f);
  w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.add_u32("llama.rope.dimension_count", head_dim);
  w.add_u32("llama.vocab_size", uint32_t(vocab));
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "smollm");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_string_array("tokenizer.ggml.merges", merges);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_u32("tokenizer.ggml.unknown_token_id", 0);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_string("tokenizer.chat_template",
               "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
               "'<|im_end|>' + '\n'}}{% endfor %}");

  // Adds a tensor unless it is the one to drop; the narrowed one loses half its rows (its last dim).
  struct Filter {
    GgufWriter& w;
    const std::string& drop;
    const std::string& narrow;
    void add_tensor(const std::string& name, std::vector<uint64_t> shape, io::GgmlType type, std::string data) {
      if (name == drop) return;
      if (name == narrow) {
        const size_t row_bytes = data.size() / shape.back();
        shape.back() /= 2;
        data.resize(row_bytes * shape.back());
      }
      w.add_tensor(name, std::move(shape), type, std::move(data));
    }
  } tensors{w, drop_tensor, narrow_tensor};
  tensors.add_tensor("token_embd.weight", {hidden, vocab}, io::GgmlType::f32, f32_bytes(hidden * vocab, 0.1f));
  for (uint64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    tensors.add_tensor(p + "attn_norm.weight", {hidden}, io::GgmlType::f32, f32_bytes(hidden, 2.0f));
    tensors.add_tensor(p + "attn_q.weight", {hidden, heads * head_dim}, io::GgmlType::q8_0, q8_0_bytes(hidden * heads * head_dim));
    tensors.add_tensor(p + "attn_k.weight", {hidden, kv_heads * head_dim}, io::GgmlType::q8_0, q8_0_bytes(hidden * kv_heads * head_dim));
    tensors.add_tensor(p + "attn_v.weight", {hidden, kv_heads * head_dim}, io::GgmlType::q8_0, q8_0_bytes(hidden * kv_heads * head_dim));
    tensors.add_tensor(p + "attn_output.weight", {heads * head_dim, hidden}, io::GgmlType::q8_0, q8_0_bytes(hidden * heads * head_dim));
    tensors.add_tensor(p + "ffn_norm.weight", {hidden}, io::GgmlType::f32, f32_bytes(hidden, 2.0f));
    tensors.add_tensor(p + "ffn_gate.weight", {hidden, ffn}, io::GgmlType::q8_0, q8_0_bytes(hidden * ffn));
    tensors.add_tensor(p + "ffn_up.weight", {hidden, ffn}, io::GgmlType::q8_0, q8_0_bytes(hidden * ffn));
    tensors.add_tensor(p + "ffn_down.weight", {ffn, hidden}, io::GgmlType::q8_0, q8_0_bytes(hidden * ffn));
  }
  tensors.add_tensor("output_norm.weight", {hidden}, io::GgmlType::f32, f32_bytes(hidden, 2.0f));
  return w.build();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  ESA_CHECK(out.good(), "{}: cannot write", path);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  ESA_CHECK(out.good(), "{}: write failed", path);
}

}  // namespace esa::test
