// Tokenizer throughput on one core: encode and decode ~1 MB of generated English prose mixed
// with code (C++, Python, JavaScript, shell), numbers and identifiers, with the embedded model's
// byte-level BPE (SmolLM2, "smollm" rules). Reports bytes/s (SetBytesProcessed) of input text.
// The text is generated from a fixed seed, so runs compare; random identifiers keep the word
// cache honest (not every word is a hit). Goal: >= 5 MB/s for encode.
//
//   ./build/bin/bench_tokenizer [--benchmark_repetitions=5]   ($ESA_MODEL overrides the model)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "text/pretokenizer.h"
#include "text/tokenizer.h"

namespace {

struct Rng {
  uint64_t state;
  uint64_t next() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

const char* const kWords[] = {
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
    "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "model", "language",
    "training", "data", "network", "attention", "layer", "token", "sequence", "result", "method",
    "performance", "however", "therefore", "experiment", "analysis", "structure", "government",
    "history", "children", "information", "community", "development", "important", "different",
    "question", "understanding", "relationship", "environment", "significant", "particular",
    "university", "temperature", "mountain", "river", "morning", "evening", "beautiful",
    "quickly", "carefully", "although", "because", "between", "through", "without", "during",
    "it's", "don't", "we're", "they've", "I'm", "you'll", "she'd", "can't", "won't", "isn't",
    "Einstein", "Paris", "London", "Python", "Linux", "GPU", "NASA", "COVID-19", "e.g.", "i.e.",
};
const char* const kPunct[] = {".", ".", ".", ",", ",", ";", ":", "?", "!", " --", "..."};

std::string identifier(Rng& rng) {
  static const char* const parts[] = {"get", "set", "value", "index", "buffer", "count", "size",
                                      "node", "tensor", "shape", "load", "parse", "token", "cache"};
  std::string id = parts[rng.below(14)];
  const size_t style = rng.below(3);
  for (size_t i = 0, n = 1 + rng.below(2); i < n; ++i) {
    std::string p = parts[rng.below(14)];
    if (style == 0) p[0] = static_cast<char>(p[0] - 'a' + 'A');
    id += style == 1 ? "_" + p : p;
  }
  if (rng.below(4) == 0) id += std::to_string(rng.below(100));
  return id;
}

void append_prose(Rng& rng, std::string& out) {
  const size_t sentences = 2 + rng.below(6);
  for (size_t s = 0; s < sentences; ++s) {
    const size_t words = 5 + rng.below(20);
    for (size_t w = 0; w < words; ++w) {
      std::string word = kWords[rng.below(std::size(kWords))];
      if (w == 0) word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
      if (rng.below(40) == 0) word = std::to_string(rng.below(100000));
      if (rng.below(60) == 0) word = "(" + word + ")";
      out += word;
      out += w + 1 < words ? (rng.below(12) == 0 ? ", " : " ") : "";
    }
    out += kPunct[rng.below(std::size(kPunct))];
    out += ' ';
  }
  out += rng.below(3) == 0 ? "\n\n" : "\n";
}

void append_code(Rng& rng, std::string& out) {
  const std::string a = identifier(rng), b = identifier(rng), c = identifier(rng);
  const std::string n = std::to_string(rng.below(4096));
  switch (rng.below(4)) {
    case 0:
      out += "static int " + a + "(const std::vector<float>& " + b + ", size_t " + c + ") {\n"
             "  for (size_t i = 0; i < " + c + "; ++i) {\n    if (" + b + "[i] > " + n +
             ".5f) return static_cast<int>(i);\n  }\n  return -1;  // not found\n}\n\n";
      break;
    case 1:
      out += "def " + a + "(" + b + ", " + c + "=None):\n    \"\"\"Return the " + b + " of " + c +
             ".\"\"\"\n    if " + c + " is None:\n        " + c + " = {}\n    return [x * " + n +
             " for x in " + b + " if x % 2 == 0]\n\n";
      break;
    case 2:
      out += "const " + a + " = async (" + b + ") => {\n\tconst res = await fetch(`/api/" + c +
             "/${" + b + "}`);\n\treturn res.json().then((d) => d." + c + " ?? " + n + ");\n};\n\n";
      break;
    default:
      out += "for f in data/*.txt; do\n  grep -c \"" + a + "\" \"$f\" >> " + b + ".log  # " + n +
             "\ndone\n\n";
      break;
  }
}

// ~1 MB: prose with a code block every few paragraphs (code ~30% of the bytes).
const std::string& mixed_text() {
  static const std::string text = [] {
    Rng rng{20240601};
    std::string out;
    while (out.size() < (1u << 20)) {
      append_prose(rng, out);
      if (rng.below(3) == 0) append_code(rng, out);
    }
    return out;
  }();
  return text;
}

const std::string& english_text() {
  static const std::string text = [] {
    Rng rng{7};
    std::string out;
    while (out.size() < (1u << 20)) append_prose(rng, out);
    return out;
  }();
  return text;
}

std::string model_path() {
  if (const char* env = std::getenv("ESA_MODEL"); env != nullptr && *env != '\0') return env;
  return ESA_DEFAULT_MODEL;
}

const esa::text::Tokenizer* tokenizer() {
  static const std::unique_ptr<esa::text::Tokenizer> tok = []() -> std::unique_ptr<esa::text::Tokenizer> {
    if (!std::filesystem::exists(model_path())) return nullptr;
    return esa::text::load_tokenizer(model_path());
  }();
  return tok.get();
}

void encode_bench(benchmark::State& state, const std::string& text) {
  const auto* tok = tokenizer();
  if (tok == nullptr) {
    state.SkipWithError(("model not found: " + model_path()).c_str());
    return;
  }
  size_t n_ids = tok->encode(text).size();  // warm-up (fills the word cache, as in steady use)
  for (auto _ : state) {
    auto ids = tok->encode(text);
    n_ids = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["bytes_per_token"] = static_cast<double>(text.size()) / static_cast<double>(n_ids);
  state.counters["tokens_per_s"] = benchmark::Counter(
      static_cast<double>(n_ids) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_EncodeMixed(benchmark::State& state) { encode_bench(state, mixed_text()); }
void BM_EncodeEnglish(benchmark::State& state) { encode_bench(state, english_text()); }

// First encode of text not seen before: a fresh tokenizer per iteration, so the word cache is
// empty (construction is excluded from the timing).
void BM_EncodeMixedColdCache(benchmark::State& state) {
  if (tokenizer() == nullptr) {
    state.SkipWithError(("model not found: " + model_path()).c_str());
    return;
  }
  const std::string& text = mixed_text();
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = esa::text::make_tokenizer(tokenizer()->spec());
    state.ResumeTiming();
    auto ids = tok->encode(text);
    benchmark::DoNotOptimize(ids.data());
    state.PauseTiming();
    tok.reset();
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

// The pre-tokenizer alone (PCRE2 JIT): the floor under encode.
void BM_PreTokenizeMixed(benchmark::State& state) {
  const esa::text::PreTokenizer pre(esa::text::PreTokenizerKind::smollm);
  const std::string& text = mixed_text();
  std::vector<std::string_view> words;
  for (auto _ : state) {
    words.clear();
    pre.split(text, words);
    benchmark::DoNotOptimize(words.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["words"] = static_cast<double>(words.size());
}

void BM_DecodeMixed(benchmark::State& state) {
  const auto* tok = tokenizer();
  if (tok == nullptr) {
    state.SkipWithError(("model not found: " + model_path()).c_str());
    return;
  }
  const std::string& text = mixed_text();
  const auto ids = tok->encode(text);
  for (auto _ : state) {
    std::string out = tok->decode(ids);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

BENCHMARK(BM_EncodeMixed)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeEnglish)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeMixedColdCache)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PreTokenizeMixed)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeMixed)->Unit(benchmark::kMillisecond);

}  // namespace
