// Sweep grids (esa sweep): a TOML file of fixed settings and axes whose cartesian product is the
// grid. Every key is an `esa eval` or `esa calibrate` setting; a cell is the full set of settings
// of one point, named by a content hash so that results stay attached to what produced them.
//
//   name = "paper_eps"                      # optional, informational
//   description = "..."                     # optional
//   [fixed]
//   suite = "kv"
//   lengths = "4k,8k"
//   policy = "esa"
//   dim = 16
//   [axes]                                  # order = nesting order, the last varies fastest
//   eps = [0, 1, 3, 5]
//   suite = ["kv", "multi-niah"]            # a key is fixed or an axis, not both
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace esa::sweep {

enum class ValueKind { string, integer, number };

struct KeyInfo {
  const char* name;
  ValueKind kind;
  const char* group;  // "eval", "budget", "calibrate"
  const char* help;
};
/// Every key a grid may set, in a stable order.
const std::vector<KeyInfo>& known_keys();

struct Cell {
  int64_t index = 0;                           // position in the grid, 0-based
  std::map<std::string, std::string> params;   // every key the config sets, as canonical text
  std::string id;                              // first 16 hex digits of sha256("key=value\n"...)
};

/// The most cells one grid may have (parse_grid refuses more).
inline constexpr int64_t kMaxCells = 1'000'000;

struct Grid {
  std::string path;
  std::string name, description;
  std::map<std::string, std::string> fixed;
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;  // file order
  /// The cartesian product, the last axis varying fastest; one cell when there is no axis.
  std::vector<Cell> cells() const;
};

/// Parses and validates a grid; throws esa::Error "<path>: ..." on TOML syntax errors (with the
/// line), unknown tables or keys (naming the closest known key), empty axes, repeated axis values,
/// a key both fixed and varied, values of the wrong type, bad values (unknown policy, suite,
/// method; malformed lengths or depths; negative budgets), and combinations that cannot mean
/// anything: a calibration key set while no cell's policy is esa (no cell would use a projection),
/// and more than kMaxCells cells.
Grid parse_grid(const std::string& toml_text, const std::string& path);
Grid load_grid(const std::string& path);

/// "i/N" with 1 <= i <= N; throws esa::Error otherwise.
std::pair<int64_t, int64_t> parse_shard(const std::string& text);
/// The cells of shard i of N: those with index % N == i - 1 (round-robin, so that every shard
/// gets a share of the expensive axis values).
std::vector<Cell> shard_cells(const std::vector<Cell>& cells, int64_t i, int64_t n);

}  // namespace esa::sweep
