// run_eval, grid parsing and the results table; see eval.h.
#include "tasks/eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "attention/diagnostics.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "engine/generate.h"

namespace esa::tasks {
namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = text.find(sep, start);
    out.push_back(text.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

double parse_number(const std::string& item, const std::string& what) {
  double v = 0;
  const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
  ESA_CHECK(ec == std::errc() && end == item.data() + item.size() && std::isfinite(v), "bad {} '{}'", what, item);
  return v;
}

}  // namespace

std::vector<int64_t> parse_lengths(const std::string& text, const char* flag) {
  std::vector<int64_t> out;
  for (std::string item : split(text, ',')) {
    ESA_CHECK(!item.empty(), "bad {} '{}': an empty item", flag, text);
    int64_t scale = 1;
    if (item.back() == 'k' || item.back() == 'K') {
      scale = 1024, item.pop_back();
    } else if (item.back() == 'm' || item.back() == 'M') {
      scale = 1024 * 1024, item.pop_back();
    }
    ESA_CHECK(!item.empty(), "bad {} '{}': a unit without a number", flag, text);
    const double v = parse_number(item, "length") * double(scale);
    ESA_CHECK(v >= 1 && v <= double(1ll << 40) && v == std::floor(v), "bad {} item '{}': not a whole number of "
              "tokens from 1 to 2^40", flag, item);
    out.push_back(int64_t(v));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

constexpr int64_t kMaxDepths = 100000;

std::vector<double> parse_depths(const std::string& text) {
  std::vector<double> percent;
  if (text.find(':') != std::string::npos) {
    const std::vector<std::string> p = split(text, ':');
    ESA_CHECK(p.size() == 3, "bad --depths '{}': expected from:to:step (percent) or a list", text);
    const double from = parse_number(p[0], "depth"), to = parse_number(p[1], "depth"), step = parse_number(p[2], "depth");
    ESA_CHECK(step > 0 && from <= to, "bad --depths '{}': need from <= to and step > 0", text);
    // Counted before the loop: a tiny step would otherwise fill memory one depth at a time.
    const double count = std::floor((to - from) / step + 1e-9) + 1;
    ESA_CHECK(std::isfinite(count) && count <= double(kMaxDepths), "bad --depths '{}': {} depths, more than the {} an "
              "eval may have", text, count, kMaxDepths);
    for (int64_t i = 0; from + double(i) * step <= to + 1e-9; ++i) percent.push_back(from + double(i) * step);
  } else {
    for (const std::string& item : split(text, ',')) percent.push_back(parse_number(item, "depth"));
  }
  std::vector<double> out;
  for (double p : percent) {
    ESA_CHECK(p >= 0 && p <= 100, "bad --depths '{}': {} is outside [0, 100] percent", text, p);
    out.push_back(p / 100.0);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int64_t depth_ppm(double depth) { return std::llround(depth * 1e6); }

std::string ids_sha256(const std::vector<int32_t>& ids) {
  std::string bytes(ids.size() * 4, '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint32_t v = uint32_t(ids[i]);
    for (int b = 0; b < 4; ++b) bytes[4 * i + size_t(b)] = char((v >> (8 * b)) & 0xFF);
  }
  return sha256_hex(bytes);
}

void run_eval(const LlamaModel& model, const text::Tokenizer& tok, const Suite& suite, const EvalOptions& o,
              const std::set<CaseKey>& done, const std::function<void(CaseResult&&)>& on_case) {
  ESA_CHECK(!o.policies.empty(), "no policy to evaluate");
  ESA_CHECK(o.grid.samples >= 1, "--samples must be >= 1, got {}", o.grid.samples);
  ESA_CHECK(o.max_new >= 0, "--max-new must be >= 0, got {}", o.max_new);
  ESA_CHECK(!o.grid.lengths.empty(), "no --lengths to evaluate");
  // Policies first: a bad projection file fails before any case runs.
  struct Runner {
    const EvalPolicy* spec;
    std::unique_ptr<attention::Policy> policy;
    attention::DiagnosticPolicy* diagnostics = nullptr;
  };
  std::vector<Runner> runners;
  for (const EvalPolicy& p : o.policies) {
    Runner r{&p, attention::make_policy(p.options, model.config())};
    if (o.diag) {
      auto wrapped = std::make_unique<attention::DiagnosticPolicy>(std::move(r.policy), model.config());
      r.diagnostics = wrapped.get();
      r.policy = std::move(wrapped);
    }
    runners.push_back(std::move(r));
  }
  const int64_t longest = *std::max_element(o.grid.lengths.begin(), o.grid.lengths.end());
  for (const EvalPolicy& p : o.policies) p.options.check_selective_for(longest);

  int64_t pending = 0, pending_tokens = 0;
  for (int64_t length : o.grid.lengths) {
    for (double depth : o.grid.depths) {
      for (int64_t s = 0; s < o.grid.samples; ++s) {
        for (const EvalPolicy& p : o.policies) {
          if (done.count(CaseKey{p.label, length, depth_ppm(depth), s}) == 0) ++pending, pending_tokens += length;
        }
      }
    }
  }
  Progress progress("eval", pending_tokens, "tokens", o.progress);
  int64_t finished = 0;
  const int64_t n_layers = model.config().n_layers;
  for (int64_t length : o.grid.lengths) {
    for (double depth : o.grid.depths) {
      for (int64_t s = 0; s < o.grid.samples; ++s) {
        std::unique_ptr<TaskCase> task;  // built once, for the first policy that needs it
        for (Runner& r : runners) {
          CaseKey key{r.spec->label, length, depth_ppm(depth), s};
          if (done.count(key) != 0) continue;
          if (!task) task = std::make_unique<TaskCase>(suite.build(length, depth, s));
          progress.set_what(fmt::format("eval case {}/{}", finished + 1, pending));
          if (r.diagnostics != nullptr) {
            r.diagnostics->clear();
            r.diagnostics->set_needles({task->prompt.needles.at(0)});
          }
          GenerateOptions g;
          g.max_new = o.max_new > 0 ? o.max_new : task->max_new;
          g.stop_ids = tok.stop_ids();
          g.chunk = r.spec->options.budget.chunk;
          g.policy = r.policy.get();
          const GenerateResult gr = generate_greedy(model, task->prompt.ids, g);
          CaseResult c;
          c.key = std::move(key);
          c.tokens = int64_t(task->prompt.ids.size());
          c.prompt_sha256 = ids_sha256(task->prompt.ids);
          for (size_t i = 0; i < task->answers.size(); ++i) c.answer += (i ? " | " : "") + task->answers[i];
          c.generated = tok.decode(gr.tokens, /*skip_special=*/true);
          const CaseScore sc = suite.score(*task, c.generated);
          c.correct = sc.correct;
          c.score = sc.score;
          c.prefill_seconds = gr.prefill_seconds;
          c.decode_seconds = gr.decode_seconds;
          c.new_tokens = int64_t(gr.tokens.size());
          c.stop_reason = gr.stop_reason;
          if (r.diagnostics != nullptr) {
            std::vector<double> recall(size_t(n_layers), 0), mass(size_t(n_layers), 0), needle(size_t(n_layers), 0);
            std::vector<int64_t> calls(size_t(n_layers), 0), needle_calls(size_t(n_layers), 0);
            for (const attention::SelectionRecord& rec : r.diagnostics->records()) {
              const size_t l = size_t(rec.layer);
              recall[l] += rec.recall, mass[l] += rec.mass, calls[l] += 1;
              const bool decode_step = rec.chunk_begin >= c.tokens;
              if (decode_step && !rec.needle_fraction.empty() && !std::isnan(rec.needle_fraction[0])) {
                needle[l] += rec.needle_fraction[0], needle_calls[l] += 1;
              }
            }
            for (size_t l = 0; l < size_t(n_layers); ++l) {
              c.diag_recall.push_back(calls[l] ? recall[l] / double(calls[l]) : NAN);
              c.diag_mass.push_back(calls[l] ? mass[l] / double(calls[l]) : NAN);
              c.diag_needle.push_back(needle_calls[l] ? needle[l] / double(needle_calls[l]) : NAN);
            }
            r.diagnostics->clear();
          }
          ++finished;
          progress.advance(length);
          std::string shown = c.generated.substr(0, 60);
          std::replace(shown.begin(), shown.end(), '\n', ' ');
          const std::string line = fmt::format("  {:<10} {:>7} {:>5.1f}% #{}: {} ({:.2f}) '{}'", c.key.policy, length,
                                               100.0 * depth, s, c.correct ? "correct" : "wrong  ", c.score, shown);
          // Saved first, reported second: a case shown finished on stderr is already in the output.
          on_case(std::move(c));
          progress.note(line);
        }
      }
    }
  }
  progress.set_what(fmt::format("eval {} cases", finished));
  progress.finish();
}

// --- the results table -------------------------------------------------------------------------

void write_cases(io::H5File& f, const std::string& group, const std::vector<CaseResult>& cases) {
  f.create_group(group);
  const int64_t n = int64_t(cases.size());
  auto strings = [&](const char* name, auto get) {
    std::vector<std::string> v;
    for (const CaseResult& c : cases) v.push_back(get(c));
    f.write(group + "/" + name, v);
  };
  auto ints = [&](const char* name, auto get) {
    std::vector<int64_t> v;
    for (const CaseResult& c : cases) v.push_back(int64_t(get(c)));
    f.write(group + "/" + name, std::span<const int64_t>(v), {n});
  };
  auto doubles = [&](const char* name, auto get) {
    std::vector<double> v;
    for (const CaseResult& c : cases) v.push_back(double(get(c)));
    f.write(group + "/" + name, std::span<const double>(v), {n});
  };
  strings("policy", [](const CaseResult& c) { return c.key.policy; });
  ints("length", [](const CaseResult& c) { return c.key.length; });
  doubles("depth", [](const CaseResult& c) { return double(c.key.depth_ppm) / 1e6; });
  ints("sample", [](const CaseResult& c) { return c.key.sample; });
  ints("tokens", [](const CaseResult& c) { return c.tokens; });
  strings("prompt_sha256", [](const CaseResult& c) { return c.prompt_sha256; });
  strings("answer", [](const CaseResult& c) { return c.answer; });
  strings("generated", [](const CaseResult& c) { return c.generated; });
  ints("correct", [](const CaseResult& c) { return c.correct ? 1 : 0; });
  doubles("score", [](const CaseResult& c) { return c.score; });
  doubles("prefill_s", [](const CaseResult& c) { return c.prefill_seconds; });
  doubles("decode_s", [](const CaseResult& c) { return c.decode_seconds; });
  ints("new_tokens", [](const CaseResult& c) { return c.new_tokens; });
  strings("stop_reason", [](const CaseResult& c) { return c.stop_reason; });
  const bool diag = !cases.empty() && !cases.front().diag_recall.empty();
  if (diag) {
    const size_t layers = cases.front().diag_recall.size();
    for (const auto& [name, member] : {std::pair{"diag_recall", &CaseResult::diag_recall},
                                       std::pair{"diag_mass", &CaseResult::diag_mass},
                                       std::pair{"diag_needle", &CaseResult::diag_needle}}) {
      std::vector<double> v;
      for (const CaseResult& c : cases) {
        const std::vector<double>& row = c.*member;
        ESA_CHECK(row.size() == layers, "diagnostics of {} layers in one case and {} in another", row.size(), layers);
        v.insert(v.end(), row.begin(), row.end());
      }
      f.write(group + "/" + name, std::span<const double>(v), {n, int64_t(layers)});
    }
  }
}

std::vector<CaseResult> read_cases(const io::H5File& f, const std::string& group) {
  ESA_CHECK(f.exists(group), "{}: no {} group (not an esa eval results file?)", f.path(), group);
  const auto policy = f.read_strings(group + "/policy");
  const size_t n = policy.size();
  auto col = [&](const char* name, auto values) {
    ESA_CHECK(values.size() == n, "{}: {}/{} has {} rows, {}/policy has {}", f.path(), group, name, values.size(),
              group, n);
    return values;
  };
  const auto length = col("length", f.read_ints(group + "/length"));
  const auto depth = col("depth", f.read_doubles(group + "/depth"));
  const auto sample = col("sample", f.read_ints(group + "/sample"));
  const auto tokens = col("tokens", f.read_ints(group + "/tokens"));
  const auto sha = col("prompt_sha256", f.read_strings(group + "/prompt_sha256"));
  const auto answer = col("answer", f.read_strings(group + "/answer"));
  const auto generated = col("generated", f.read_strings(group + "/generated"));
  const auto correct = col("correct", f.read_ints(group + "/correct"));
  const auto score = col("score", f.read_doubles(group + "/score"));
  const auto prefill = col("prefill_s", f.read_doubles(group + "/prefill_s"));
  const auto decode = col("decode_s", f.read_doubles(group + "/decode_s"));
  const auto new_tokens = col("new_tokens", f.read_ints(group + "/new_tokens"));
  const auto stop = col("stop_reason", f.read_strings(group + "/stop_reason"));
  std::vector<CaseResult> out(n);
  std::set<std::tuple<std::string, int64_t, int64_t, int64_t>> seen;
  for (size_t i = 0; i < n; ++i) {
    // A row esa could not have written (a corrupt or hand-edited file) would be carried into a
    // resumed run and counted: refused, naming the row.
    const std::string where = fmt::format("{}: {} row {}", f.path(), group, i);
    ESA_CHECK(!policy[i].empty(), "{}: an empty policy name", where);
    ESA_CHECK(length[i] >= 1 && length[i] <= (int64_t(1) << 40), "{}: length {} is not 1 .. 2^40 tokens", where,
              length[i]);
    ESA_CHECK(std::isfinite(depth[i]) && depth[i] >= 0.0 && depth[i] <= 1.0, "{}: depth {} is outside [0, 1]", where,
              depth[i]);
    ESA_CHECK(sample[i] >= 0, "{}: sample {} is negative", where, sample[i]);
    ESA_CHECK(tokens[i] >= 0 && new_tokens[i] >= 0, "{}: negative token counts ({}, {})", where, tokens[i],
              new_tokens[i]);
    ESA_CHECK(correct[i] == 0 || correct[i] == 1, "{}: correct is {}, expected 0 or 1", where, correct[i]);
    ESA_CHECK(seen.emplace(policy[i], length[i], depth_ppm(depth[i]), sample[i]).second,
              "{}: a second row for case ({}, length {}, depth {}, sample {})", where, policy[i], length[i], depth[i],
              sample[i]);
    CaseResult& c = out[i];
    c.key = CaseKey{policy[i], length[i], depth_ppm(depth[i]), sample[i]};
    c.tokens = tokens[i];
    c.prompt_sha256 = sha[i];
    c.answer = answer[i];
    c.generated = generated[i];
    c.correct = correct[i] != 0;
    c.score = score[i];
    c.prefill_seconds = prefill[i];
    c.decode_seconds = decode[i];
    c.new_tokens = new_tokens[i];
    c.stop_reason = stop[i];
  }
  if (f.exists(group + "/diag_recall")) {
    for (const auto& [name, member] : {std::pair{"diag_recall", &CaseResult::diag_recall},
                                       std::pair{"diag_mass", &CaseResult::diag_mass},
                                       std::pair{"diag_needle", &CaseResult::diag_needle}}) {
      const std::string path = group + "/" + name;
      const std::vector<int64_t> shape = f.shape(path);
      ESA_CHECK(shape.size() == 2 && shape[0] == int64_t(n), "{}: {} has shape [{}], expected [{}, layers]", f.path(),
                path, fmt::join(shape, ", "), n);
      const std::vector<double> v = f.read_doubles(path);
      for (size_t i = 0; i < n; ++i) {
        out[i].*member = std::vector<double>(v.begin() + int64_t(i) * shape[1], v.begin() + int64_t(i + 1) * shape[1]);
      }
    }
  }
  return out;
}

std::string accuracy_table(const std::vector<CaseResult>& cases) {
  std::vector<std::string> policies;
  std::set<int64_t> lengths, depths;
  for (const CaseResult& c : cases) {
    if (std::find(policies.begin(), policies.end(), c.key.policy) == policies.end()) policies.push_back(c.key.policy);
    lengths.insert(c.key.length);
    depths.insert(c.key.depth_ppm);
  }
  const bool by_policy = policies.size() > 1;
  std::vector<std::string> columns;
  if (by_policy) {
    columns = policies;
  } else {
    for (int64_t d : depths) columns.push_back(fmt::format("{:g}%", double(d) / 1e4));
  }
  columns.push_back("all");
  // (length, column) -> correct, score sum, count
  struct Cell { double correct = 0, score = 0; int64_t n = 0; };
  std::map<std::pair<int64_t, std::string>, Cell> cells;
  for (const CaseResult& c : cases) {
    const std::string column = by_policy ? c.key.policy : fmt::format("{:g}%", double(c.key.depth_ppm) / 1e4);
    for (const std::string& col : {column, std::string("all")}) {
      if (by_policy && col == "all") continue;  // "all" over policies would mix them
      Cell& cell = cells[{c.key.length, col}];
      cell.correct += c.correct ? 1 : 0, cell.score += c.score, cell.n += 1;
    }
  }
  if (by_policy) columns.pop_back();
  // A score row only where scores carry partial credit (niah, multi-niah), not a copy of the % row.
  const bool partial = std::any_of(cases.begin(), cases.end(),
                                   [](const CaseResult& c) { return c.score != (c.correct ? 1.0 : 0.0); });
  size_t width = 7;
  for (const std::string& c : columns) width = std::max(width, c.size() + 1);
  std::string out = fmt::format("{:>8}", "length");
  for (const std::string& c : columns) out += fmt::format(" {:>{}}", c, width);
  out += "\n";
  for (int64_t length : lengths) {
    std::string row = fmt::format("{:>8}", length), scores = fmt::format("{:>8}", "score");
    for (const std::string& col : columns) {
      const auto it = cells.find({length, col});
      if (it == cells.end()) {
        row += fmt::format(" {:>{}}", "-", width), scores += fmt::format(" {:>{}}", "", width);
        continue;
      }
      const Cell& cell = it->second;
      row += fmt::format(" {:>{}.1f}", 100.0 * cell.correct / double(cell.n), width);
      scores += fmt::format(" {:>{}.3f}", cell.score / double(cell.n), width);
    }
    out += row + "\n" + (partial ? scores + "\n" : "");
  }
  return out;
}

}  // namespace esa::tasks
