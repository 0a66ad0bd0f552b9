// esa bench: throughput measurements (tokenize now; model and attention with the engine).
// Each repetition is timed separately; the median and the spread are reported, never one run.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

#include "commands.h"
#include "core/error.h"
#include "core/file_io.h"
#include "text/tokenizer.h"

namespace esa::cli {
namespace {

struct BenchTokenizeOptions {
  std::string model;
  std::string file;
  int64_t bytes = 1 << 20;
  int repeat = 5;
  uint64_t seed = 1234;
};

// Deterministic English-like text with numbers, punctuation, code and line breaks, used when
// no --file is given (a real corpus arrives with the calibration data).
std::string synthetic_text(int64_t bytes, uint64_t seed) {
  static const char* words[] = {
      "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by",
      "on", "not", "he", "I", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
      "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been",
      "attention", "selective", "compression", "context", "window", "token", "query", "key", "value",
      "model", "length", "memory", "sequence", "important", "neighbour", "retrieval", "needle",
      "haystack", "passkey", "projection", "calibration", "London", "Paris", "Wednesday", "don't",
      "it's", "we've", "they're", "I'll", "she'd", "naïve", "café", "über", "résumé", "2025", "3.14159",
      "1,000,000", "(see", "below)", "e.g.", "i.e.,", "--", "\"quoted\"", "end.", "again?", "yes!"};
  std::mt19937_64 rng(seed);
  std::string out;
  out.reserve(size_t(bytes) + 64);
  int in_sentence = 0;
  while (int64_t(out.size()) < bytes) {
    const auto r = rng();
    if (r % 97 == 0) {
      out += "\n\n    for (int i = 0; i < n; ++i) { sum += x[i] * y[i]; }\n\n";
      continue;
    }
    const char* w = words[r % std::size(words)];
    if (in_sentence == 0 && !out.empty()) out += ' ';
    out += w;
    if (++in_sentence > 8 + int(r % 13)) {
      out += (r % 5 == 0) ? ".\n" : ". ";
      in_sentence = 0;
    } else {
      out += ' ';
    }
  }
  out.resize(size_t(bytes));
  return out;
}

void run_bench_tokenize(const BenchTokenizeOptions& opt) {
  ESA_CHECK(opt.repeat >= 1, "--repeat must be at least 1, got {}", opt.repeat);
  ESA_CHECK(opt.bytes >= 1, "--bytes must be positive, got {}", opt.bytes);
  omp_set_num_threads(1);
  const auto tok = text::load_tokenizer(opt.model);
  std::string input;
  std::string source;
  if (!opt.file.empty()) {
    input = read_file(opt.file);
    ESA_CHECK(!input.empty(), "{}: empty file", opt.file);
    source = opt.file;
  } else {
    input = synthetic_text(opt.bytes, opt.seed);
    source = fmt::format("synthetic English-like text, seed {}", opt.seed);
  }
  // The first run is reported on its own: it starts with an empty word cache, as a one-off
  // tokenization of a document does.
  const auto c0 = std::chrono::steady_clock::now();
  size_t n_tokens = tok->encode(input, false, true).size();
  const double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  std::vector<double> seconds;
  for (int r = 0; r < opt.repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    n_tokens = tok->encode(input, false, true).size();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    fmt::print(stderr, "\rrepetition {}/{}", r + 1, opt.repeat);
  }
  fmt::print(stderr, "\n");
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const double mb = double(input.size()) / 1e6;
  fmt::print("bench tokenize: {} ({} bytes, {} tokens), 1 thread, cold first run, then {} repetitions\n", source,
             input.size(), n_tokens, opt.repeat);
  fmt::print("{:<12} {:>10} {:>10} {:>10} {:>10} {:>12}\n", "", "cold", "median", "best", "worst", "tokens/s");
  fmt::print("{:<12} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>12.0f}\n", "MB/s", mb / cold, mb / median,
             mb / seconds.front(), mb / seconds.back(), double(n_tokens) / median);
}

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Throughput benchmarks (median and spread of repeated runs)");
  bench->require_subcommand(1);
  auto opt = std::make_shared<BenchTokenizeOptions>();
  opt->model = default_model_path();
  CLI::App* cmd = bench->add_subcommand("tokenize", "Tokenizer throughput on one core");
  cmd->add_option("--model,-m", opt->model, "Model whose tokenizer to use")->capture_default_str();
  cmd->add_option("--file,-f", opt->file, "Text file to tokenize (default: synthetic text of --bytes)")
      ->capture_default_str();
  cmd->add_option("--bytes", opt->bytes, "Size of the synthetic text in bytes")->capture_default_str();
  cmd->add_option("--repeat", opt->repeat, "Timed repetitions (after one warm-up)")->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Seed of the synthetic text")->capture_default_str();
  cmd->callback([opt] { run_bench_tokenize(*opt); });
}

}  // namespace esa::cli
