// Sweep grids; see grid.h.
#include "sweep/grid.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <sstream>

#include "attention/policy.h"
#include "calib/calibrate.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/sha256.h"
#include "tasks/eval.h"
#include "tasks/suite.h"

namespace esa::sweep {
namespace {

const KeyInfo* find_key(const std::string& name) {
  for (const KeyInfo& k : known_keys()) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

// Levenshtein distance, for "did you mean" on a misspelt key.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string closest_key(const std::string& name) {
  std::string best;
  size_t best_d = 4;  // suggest only near misses
  for (const KeyInfo& k : known_keys()) {
    const size_t d = edit_distance(name, k.name);
    if (d < best_d) best_d = d, best = k.name;
  }
  return best.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", best);
}

std::string type_name(ValueKind k) {
  return k == ValueKind::string ? "a string" : k == ValueKind::integer ? "an integer" : "a number";
}

// One TOML value as canonical text, checked against the key's kind.
std::string canonical(const std::string& path, const std::string& key, const toml::node& node) {
  const KeyInfo* info = find_key(key);
  const auto line = node.source().begin.line;
  switch (info->kind) {
    case ValueKind::string:
      if (const auto* v = node.as_string()) return v->get();
      break;
    case ValueKind::integer:
      if (const auto* v = node.as_integer()) return fmt::format("{}", v->get());
      break;
    case ValueKind::number:
      if (const auto* v = node.as_integer()) return fmt::format("{}", v->get());
      if (const auto* v = node.as_floating_point()) return fmt::format("{}", v->get());
      break;
  }
  ESA_FAIL("{}:{}: '{}' must be {}", path, line, key, type_name(info->kind));
}

// The checks that need only one value: names exist, numbers are in range, grids parse.
void check_value(const std::string& path, const std::string& key, const std::string& v) {
  const auto where = [&] { return fmt::format("{}: {} = {}", path, key, v); };
  try {
    if (key == "policy") attention::parse_policy(v);
    if (key == "heads") attention::parse_head_mode(v);
    if (key == "score_space") attention::parse_score_space(v);
    if (key == "method") calib::parse_method(v);
    if (key == "lengths") tasks::parse_lengths(v);
    if (key == "depths") tasks::parse_depths(v);
  } catch (const Error& e) {
    ESA_FAIL("{}: {}", where(), e.what());
  }
  if (key == "suite") {
    const auto names = tasks::suite_names();
    ESA_CHECK(std::find(names.begin(), names.end(), v) != names.end(), "{}: unknown suite (expected {})", where(),
              fmt::join(names, ", "));
  }
  if (key == "variant") ESA_CHECK(v == "multikey" || v == "multivalue", "{}: expected multikey or multivalue", where());
  if (key == "chat") ESA_CHECK(v == "on" || v == "off" || v == "auto", "{}: expected on, off or auto", where());
  if (key == "loss") ESA_CHECK(v == "mse" || v == "rank", "{}: expected mse or rank", where());
  const KeyInfo* info = find_key(key);
  if (info->kind != ValueKind::string) {
    const double x = std::stod(v);
    const bool may_be_zero = key == "eps" || key == "init" || key == "seed" || key == "max_new";
    if (key == "w") {
      ESA_CHECK(x >= -1, "{}: must be >= -1 (-1: the local window)", where());
    } else {
      ESA_CHECK(may_be_zero ? x >= 0 : x > 0, "{}: must be {}", where(), may_be_zero ? ">= 0" : "> 0");
    }
  }
}

}  // namespace

const std::vector<KeyInfo>& known_keys() {
  static const std::vector<KeyInfo> keys = {
      {"model", ValueKind::string, "eval", "model file or folder"},
      {"suite", ValueKind::string, "eval", "passkey, niah, multi-niah, kv"},
      {"variant", ValueKind::string, "eval", "multi-niah: multikey or multivalue"},
      {"needles", ValueKind::integer, "eval", "multi-niah: needles"},
      {"haystack", ValueKind::string, "eval", "niah, multi-niah: essay text"},
      {"chat", ValueKind::string, "eval", "on, off, auto"},
      {"lengths", ValueKind::string, "eval", "prompt lengths, e.g. \"4k,8k\""},
      {"depths", ValueKind::string, "eval", "needle depths in percent, e.g. \"0:100:25\""},
      {"samples", ValueKind::integer, "eval", "cases per (length, depth)"},
      {"seed", ValueKind::integer, "eval", "seed of the cases' content"},
      {"max_new", ValueKind::integer, "eval", "tokens generated per case (0: the suite's)"},
      {"policy", ValueKind::string, "budget", "full, streaming, infllm, quest, esa, oracle"},
      {"init", ValueKind::integer, "budget", "initial tokens"},
      {"local", ValueKind::integer, "budget", "local window"},
      {"select", ValueKind::integer, "budget", "selected middle tokens"},
      {"chunk", ValueKind::integer, "budget", "prefill chunk"},
      {"eps", ValueKind::integer, "budget", "proximity half-width"},
      {"heads", ValueKind::string, "budget", "uniform or individual"},
      {"score_space", ValueKind::string, "budget", "rotated or plain"},
      {"w", ValueKind::integer, "budget", "long-branch query position (-1: local)"},
      {"dim", ValueKind::integer, "calibrate", "compressed dimension d'"},
      {"method", ValueKind::string, "calibrate", "closed, adam, pca"},
      {"loss", ValueKind::string, "calibrate", "adam loss: mse or rank"},
      {"epochs", ValueKind::integer, "calibrate", "adam epochs"},
      {"calib_text", ValueKind::string, "calibrate", "calibration text file"},
      {"calib_tokens", ValueKind::integer, "calibrate", "tokens dumped for calibration"},
      {"calib_seq_len", ValueKind::integer, "calibrate", "tokens per calibration sequence"},
  };
  return keys;
}

Grid parse_grid(const std::string& text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    ESA_FAIL("{}:{}: {}", path, e.source().begin.line, e.description());
  }
  Grid g;
  g.path = path;
  for (const auto& [k, node] : root) {
    const std::string key(k.str());
    if (key == "name" || key == "description") {
      ESA_CHECK(node.is_string(), "{}: '{}' must be a string", path, key);
      (key == "name" ? g.name : g.description) = node.as_string()->get();
    } else if (key == "fixed" || key == "axes") {
      ESA_CHECK(node.is_table(), "{}: [{}] must be a table", path, key);
    } else {
      ESA_FAIL("{}:{}: unknown top-level key '{}' (expected name, description, [fixed], [axes])", path,
               node.source().begin.line, key);
    }
  }
  auto check_known = [&](const std::string& key, const toml::node& node) {
    ESA_CHECK(find_key(key) != nullptr, "{}:{}: unknown key '{}'{}", path, node.source().begin.line, key,
              closest_key(key));
  };
  if (const toml::table* fixed = root["fixed"].as_table()) {
    for (const auto& [k, node] : *fixed) {
      const std::string key(k.str());
      check_known(key, node);
      ESA_CHECK(!node.is_array() && !node.is_table(), "{}:{}: [fixed] {} must be a single value (lists go in [axes])",
                path, node.source().begin.line, key);
      g.fixed[key] = canonical(path, key, node);
      check_value(path, key, g.fixed[key]);
    }
  }
  if (const toml::table* axes = root["axes"].as_table()) {
    std::vector<std::pair<int64_t, int64_t>> axis_lines;  // (line, column) of each axis
    for (const auto& [k, node] : *axes) {
      const std::string key(k.str());
      check_known(key, node);
      const int64_t line = node.source().begin.line;
      ESA_CHECK(g.fixed.count(key) == 0, "{}:{}: '{}' is both fixed and an axis", path, line, key);
      const toml::array* values = node.as_array();
      ESA_CHECK(values != nullptr, "{}:{}: axis '{}' must be a list of values", path, line, key);
      ESA_CHECK(!values->empty(), "{}:{}: axis '{}' is empty", path, line, key);
      std::vector<std::string> texts;
      std::set<std::string> seen;
      for (const toml::node& v : *values) {
        ESA_CHECK(!v.is_array() && !v.is_table(), "{}:{}: axis '{}' holds a list or table", path, line, key);
        std::string t = canonical(path, key, v);
        check_value(path, key, t);
        ESA_CHECK(seen.insert(t).second, "{}:{}: axis '{}' lists {} twice", path, line, key, t);
        texts.push_back(std::move(t));
      }
      g.axes.emplace_back(key, std::move(texts));
      axis_lines.push_back({line, int64_t(node.source().begin.column)});
    }
    // toml++ iterates a table in key order; the nesting order is the file's.
    std::vector<size_t> order(g.axes.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return axis_lines[a] < axis_lines[b]; });
    decltype(g.axes) in_file_order;
    for (size_t i : order) in_file_order.push_back(std::move(g.axes[i]));
    g.axes = std::move(in_file_order);
  }
  // A calibration key means a projection; some cell must use one.
  std::vector<std::string> policies;
  if (g.fixed.count("policy")) policies.push_back(g.fixed.at("policy"));
  for (const auto& [key, values] : g.axes) {
    if (key == "policy") policies = values;
  }
  // The product is materialised (cells()); a few axes of a few hundred values would be an
  // allocation bomb and no one's intent.
  int64_t n_cells = 1;
  for (const auto& [key, values] : g.axes) {
    n_cells *= int64_t(values.size());
    ESA_CHECK(n_cells <= kMaxCells, "{}: the axes make more than {} cells (up to '{}'); split the grid", path,
              kMaxCells, key);
  }
  if (policies.empty()) policies.push_back("full");  // esa eval's default
  const bool any_esa = std::find(policies.begin(), policies.end(), "esa") != policies.end();
  for (const KeyInfo& k : known_keys()) {
    const bool set = g.fixed.count(k.name) != 0 ||
                     std::any_of(g.axes.begin(), g.axes.end(), [&](const auto& a) { return a.first == k.name; });
    ESA_CHECK(!set || any_esa || std::string(k.group) != "calibrate",
              "{}: '{}' is a calibration setting, but no cell uses a projection (policy {}; only esa does)", path,
              k.name, fmt::join(policies, ", "));
  }
  return g;
}

Grid load_grid(const std::string& path) { return parse_grid(read_file(path), path); }

std::vector<Cell> Grid::cells() const {
  int64_t total = 1;
  for (const auto& a : axes) total *= int64_t(a.second.size());
  std::vector<Cell> out;
  out.reserve(size_t(total));
  for (int64_t index = 0; index < total; ++index) {
    Cell c;
    c.index = index;
    c.params = fixed;
    int64_t rest = index;
    for (size_t a = axes.size(); a-- > 0;) {  // the last axis varies fastest
      const auto& [key, values] = axes[a];
      c.params[key] = values[size_t(rest % int64_t(values.size()))];
      rest /= int64_t(values.size());
    }
    std::string canon;
    for (const auto& [k, v] : c.params) canon += k + "=" + v + "\n";
    c.id = sha256_hex(canon).substr(0, 16);
    out.push_back(std::move(c));
  }
  return out;
}

std::pair<int64_t, int64_t> parse_shard(const std::string& text) {
  const size_t slash = text.find('/');
  int64_t i = 0, n = 0;
  try {
    ESA_CHECK(slash != std::string::npos, "");
    size_t used = 0;
    i = std::stoll(text.substr(0, slash), &used);
    ESA_CHECK(used == slash, "");
    n = std::stoll(text.substr(slash + 1), &used);
    ESA_CHECK(used == text.size() - slash - 1, "");
  } catch (const std::exception&) {
    ESA_FAIL("bad --shard '{}': expected i/N, e.g. 2/8", text);
  }
  ESA_CHECK(n >= 1 && i >= 1 && i <= n, "bad --shard '{}': need 1 <= i <= N", text);
  return {i, n};
}

std::vector<Cell> shard_cells(const std::vector<Cell>& cells, int64_t i, int64_t n) {
  std::vector<Cell> out;
  for (const Cell& c : cells) {
    if (c.index % n == i - 1) out.push_back(c);
  }
  return out;
}

}  // namespace esa::sweep
