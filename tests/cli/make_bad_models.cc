// Writes good (tiny.gguf, tiny_long.gguf) and corrupt model files into a folder for the CLI tests
// (tests/cli), and prints one line per corrupt case: "<path>\t<text the error message must contain>".
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "io/gguf.h"
#include "support/gguf_writer.h"

namespace {

using esa::test::write_file;

template <typename T>
void poke(std::string& b, size_t at, T v) { std::memcpy(b.data() + at, &v, sizeof(T)); }

// The case's file, the text its error must contain, and the command that must reject it
// ("info" reads metadata; "generate" also loads every weight).
void emit(const std::string& path, const std::string& needle, const char* command = "info") {
  std::printf("%s\t%s\t%s\n", path.c_str(), needle.c_str(), command);
}

std::string safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  poke<uint64_t>(out, 0, header.size());
  return out + header + data;
}

const char* kConfig = R"({"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":8,
"intermediate_size":16,"num_attention_heads":2,"num_key_value_heads":1,"num_hidden_layers":1,
"vocab_size":4,"max_position_embeddings":64,"rms_norm_eps":1e-5,"rope_theta":10000.0})";

std::string st_dir(const std::string& root, const std::string& name, const std::string& file_bytes) {
  const std::string dir = root + "/" + name;
  std::filesystem::create_directories(dir);
  write_file(dir + "/config.json", kConfig);
  write_file(dir + "/model.safetensors", file_bytes);
  return dir;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_bad_models DIR\n");
    return 2;
  }
  const std::string root = argv[1];
  std::filesystem::create_directories(root);
  const std::string good = esa::test::tiny_llama_gguf();
  write_file(root + "/tiny.gguf", good);
  {
    // The same model with a trained context of 4096 tokens instead of 256: the eval suites' fixed
    // prompt parts take ~220 of the byte-level tokens, so `esa eval` / `esa sweep` scenarios on
    // tiny models (tests/cli/test_eval.sh, test_sweep.sh) need the room. Not a corrupt case.
    std::string b = good;
    const size_t at = b.find("llama.context_length") + 20;
    poke<uint32_t>(b, at + 4, 4096);  // after the value type (uint32)
    write_file(root + "/tiny_long.gguf", b);
  }

  auto gguf_case = [&](const std::string& name, const std::string& bytes, const std::string& needle) {
    write_file(root + "/" + name, bytes);
    emit(root + "/" + name, needle);
  };
  gguf_case("empty.gguf", "", "not a GGUF file");
  { std::string b = good; b[1] = 'X'; gguf_case("bad_magic.gguf", b, "bad magic"); }
  { std::string b = good; poke<uint32_t>(b, 4, 9); gguf_case("bad_version.gguf", b, "unsupported GGUF version 9"); }
  gguf_case("truncated_header.gguf", good.substr(0, 300), "truncated");
  { std::string b = good; poke<uint64_t>(b, 8, uint64_t(1) << 62); gguf_case("huge_tensor_count.gguf", b, "tensor count"); }
  { std::string b = good; poke<uint64_t>(b, 16, uint64_t(1) << 61); gguf_case("huge_kv_count.gguf", b, "metadata count"); }
  { std::string b = good; poke<uint64_t>(b, 24, uint64_t(1) << 50); gguf_case("huge_string.gguf", b, "past the end"); }
  gguf_case("tokens_past_embedding.gguf", esa::test::tiny_llama_gguf("", "", 3), "embedding only");
  gguf_case("truncated_data.gguf", good.substr(0, good.size() - 100), "past the end");
  {
    // The first tensor's type field: find the name "token_embd.weight" in the tensor infos.
    std::string b = good;
    const size_t at = b.find("token_embd.weight") + 17 + 4 + 16;
    poke<uint32_t>(b, at, 123);
    gguf_case("unknown_dtype.gguf", b, "unknown ggml type 123");
    b = good;
    poke<uint64_t>(b, at + 4, uint64_t(1) << 45);
    gguf_case("offset_past_end.gguf", b, "past the end");
    // A second tensor over the first's bytes (blk.0.attn_q.weight moved to token_embd's offset 0).
    b = good;
    const size_t q_at = b.find("blk.0.attn_q.weight") + 19 + 4 + 16 + 4;
    poke<uint64_t>(b, q_at, 0);
    gguf_case("overlapping_tensors.gguf", b, "overlap");
  }
  {
    std::string b = good;
    const size_t arch = b.find("general.architecture") + 20 + 4 + 8;
    std::memcpy(b.data() + arch, "mamba", 5);
    gguf_case("unknown_arch.gguf", b, "unknown architecture 'mamba'");
  }
  {
    // An architecture name of 200000 bytes: the error quotes its head and tail, not all of it.
    std::string b = good;
    const size_t len_at = b.find("general.architecture") + 20 + 4;
    const std::string name = "mamba" + std::string(200000, 'x');
    b.replace(len_at, 8 + 5, std::string(8, '\0') + name);  // "llama" -> the long name
    poke<uint64_t>(b, len_at, name.size());
    gguf_case("long_arch.gguf", b, "[200005 bytes in all]");
  }
  {
    std::string b = good;
    const size_t key = b.find("llama.block_count");
    std::memcpy(b.data() + key, "llama.block_COUNT", 17);
    gguf_case("missing_key.gguf", b, "llama.block_count");
  }

  // Weights that disagree with the config: found when the weights load.
  write_file(root + "/missing_tensor.gguf", esa::test::tiny_llama_gguf("blk.1.ffn_up.weight"));
  emit(root + "/missing_tensor.gguf", "missing tensor 'blk.1.ffn_up.weight'", "generate");
  {
    // A NaN in the first element of the first float32 tensor (found with esa's own reader).
    const esa::io::GgufFile parsed(root + "/tiny.gguf");
    for (const auto& t : parsed.tensors()) {
      if (t.type != esa::io::GgmlType::f32) continue;
      std::string b = good;
      poke<uint32_t>(b, parsed.data_offset() + t.offset, 0x7fc00000u);
      write_file(root + "/nan_weight.gguf", b);
      emit(root + "/nan_weight.gguf", "tensor '" + t.name + "' holds a non-finite value (nan) at element 0", "generate");
      break;
    }
  }
  {
    // Finite weights whose forward overflows float16: the first layer's key projection (Q8_0
    // blocks: a float16 scale, 32 int8) at 65504 x 127 (not in the table of load errors: the file
    // is valid; `esa dump` must refuse its keys).
    const esa::io::GgufFile parsed(root + "/tiny.gguf");
    for (const auto& t : parsed.tensors()) {
      if (t.name != "blk.0.attn_k.weight" || t.type != esa::io::GgmlType::q8_0) continue;
      std::string b = good;
      for (uint64_t at = parsed.data_offset() + t.offset; at < parsed.data_offset() + t.offset + t.n_bytes; at += 34) {
        poke<uint16_t>(b, at, 0x7bff);
        for (int i = 0; i < 32; ++i) poke<int8_t>(b, at + 2 + size_t(i), 127);
      }
      write_file(root + "/overflow.gguf", b);
    }
  }
  write_file(root + "/shape_mismatch.gguf", esa::test::tiny_llama_gguf("", "blk.0.attn_q.weight"));
  emit(root + "/shape_mismatch.gguf", "tensor 'blk.0.attn_q.weight' has shape [16, 32], expected [32, 32]", "generate");
  {
    std::string b = good;
    poke<uint32_t>(b, b.find("llama.attention.head_count_kv") + 29 + 4, 3);  // 4 heads over 3 KV heads
    gguf_case("heads_not_divisible.gguf", b, "head_count");
  }

  // safetensors folders (each with a valid config.json).
  const std::string tensor_hdr = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  emit(st_dir(root, "st_bad_json", safetensors(R"({"w":{"dtype":"F32",)", std::string(16, '\0'))), "not valid JSON");
  {
    std::string b = safetensors(tensor_hdr, std::string(16, '\0'));
    poke<uint64_t>(b, 0, uint64_t(1) << 40);
    emit(st_dir(root, "st_huge_header", b), "header length");
  }
  emit(st_dir(root, "st_unknown_dtype",
              safetensors(R"({"w":{"dtype":"F13","shape":[2,2],"data_offsets":[0,16]}})", std::string(16, '\0'))),
       "F13");
  emit(st_dir(root, "st_offset_past_end",
              safetensors(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,1600]}})", std::string(16, '\0'))),
       "past the end");
  emit(st_dir(root, "st_truncated", std::string("\x10\x00\x00", 3)), "too short");
  {
    const std::string dir = root + "/st_missing_shard";
    std::filesystem::create_directories(dir);
    write_file(dir + "/config.json", kConfig);
    write_file(dir + "/model-00001-of-00002.safetensors", safetensors(tensor_hdr, std::string(16, '\0')));
    write_file(dir + "/model.safetensors.index.json",
               R"({"metadata":{},"weight_map":{"w":"model-00001-of-00002.safetensors","v":"model-00002-of-00002.safetensors"}})");
    emit(dir, "not found");
  }
  emit(root + "/does_not_exist.gguf", "no such file");
  write_file(root + "/notes.txt", "just some text, not a model\n");
  emit(root + "/notes.txt", "not a model");
  return 0;
}
