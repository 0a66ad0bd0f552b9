// Sweep grids: TOML parsing, the cartesian product and its cell ids, sharding, and every kind of
// bad config giving an error that names the file and the problem.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "sweep/grid.h"

namespace esa {
namespace {

std::string error_of(const std::string& toml) {
  try {
    sweep::parse_grid(toml, "grid.toml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SweepGrid, Cells) {
  const sweep::Grid g = sweep::parse_grid(R"(
name = "eps"
[fixed]
lengths = "4k,8k"
policy = "esa"
dim = 16
[axes]
eps = [0, 1, 3, 5]
suite = ["kv", "multi-niah"]
)", "grid.toml");
  EXPECT_EQ(g.name, "eps");
  ASSERT_EQ(g.axes.size(), 2u);
  EXPECT_EQ(g.axes[0].first, "eps");  // file order
  const std::vector<sweep::Cell> cells = g.cells();
  ASSERT_EQ(cells.size(), 8u);
  EXPECT_EQ(cells[0].params.at("eps"), "0");
  EXPECT_EQ(cells[0].params.at("suite"), "kv");
  EXPECT_EQ(cells[1].params.at("eps"), "0");
  EXPECT_EQ(cells[1].params.at("suite"), "multi-niah");
  EXPECT_EQ(cells[7].params.at("eps"), "5");
  std::set<std::string> ids;
  for (size_t i = 0; i < cells.size(); ++i) {
    EXPECT_EQ(cells[i].index, int64_t(i));
    EXPECT_EQ(cells[i].params.at("lengths"), "4k,8k");
    EXPECT_EQ(cells[i].params.at("dim"), "16");
    EXPECT_EQ(cells[i].id.size(), 16u);
    ids.insert(cells[i].id);
  }
  EXPECT_EQ(ids.size(), cells.size()) << "distinct cells, distinct ids";
  // The id depends on the settings only: the same cell written another way has the same id.
  const sweep::Grid same = sweep::parse_grid(R"(
[axes]
suite = ["multi-niah"]
[fixed]
dim = 16
policy = "esa"
lengths = "4k,8k"
eps = 5
)", "other.toml");
  EXPECT_EQ(same.cells().at(0).id, cells[7].id);
  // Axes nest in file order, not in key order (toml++ iterates tables sorted by key).
  const sweep::Grid reversed = sweep::parse_grid("[axes]\nsuite = [\"kv\", \"multi-niah\"]\neps = [0, 1, 3]\n", "r.toml");
  ASSERT_EQ(reversed.axes.size(), 2u);
  EXPECT_EQ(reversed.axes[0].first, "suite");
  const auto rc = reversed.cells();
  EXPECT_EQ(rc[0].params.at("suite"), "kv");
  EXPECT_EQ(rc[1].params.at("eps"), "1");
  EXPECT_EQ(rc[1].params.at("suite"), "kv");
  EXPECT_EQ(rc[3].params.at("suite"), "multi-niah");
  // No axis: one cell of the fixed settings.
  EXPECT_EQ(sweep::parse_grid("[fixed]\nsuite = \"kv\"\n", "g.toml").cells().size(), 1u);
}

TEST(SweepGrid, Shards) {
  const sweep::Grid g = sweep::parse_grid("[axes]\neps = [0, 1, 2, 3, 4, 5, 6]\nlocal = [512, 1024]\n"
                                          "[fixed]\npolicy = \"oracle\"\n", "g.toml");
  const auto cells = g.cells();
  ASSERT_EQ(cells.size(), 14u);
  for (int64_t n : {1, 2, 3, 5, 14, 20}) {
    std::multiset<std::string> all;
    for (int64_t i = 1; i <= n; ++i) {
      const auto part = sweep::shard_cells(cells, i, n);
      EXPECT_LE(int64_t(part.size()), (14 + n - 1) / n);
      for (const auto& c : part) all.insert(c.id);
    }
    std::multiset<std::string> expect;
    for (const auto& c : cells) expect.insert(c.id);
    EXPECT_EQ(all, expect) << "shards of " << n << " cover every cell once";
  }
  EXPECT_EQ(sweep::parse_shard("2/8"), (std::pair<int64_t, int64_t>{2, 8}));
  for (const char* bad : {"", "2", "0/3", "4/3", "1/0", "a/b", "1/3x", "-1/3", "1//3"}) {
    EXPECT_THROW(sweep::parse_shard(bad), Error) << bad;
  }
}

TEST(SweepGrid, BadConfigsNameTheProblem) {
  std::string many;  // 101 distinct values: three such axes make 1030301 cells
  for (int i = 0; i <= 100; ++i) many += (i ? ", " : "") + std::to_string(i + 1);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[fixed]\nsuite = \"kv\"\nepz = 3\n", "grid.toml:3: unknown key 'epz' (did you mean 'eps'?)"},
      {"[axes]\neps = []\n", "axis 'eps' is empty"},
      {"[axes]\neps = [" + many + "]\nchunk = [" + many + "]\nselect = [" + many + "]\n",
       "the axes make more than 1000000 cells (up to 'select')"},
      {"[axes]\neps = [1, 3, 1]\n", "axis 'eps' lists 1 twice"},
      {"[fixed]\neps = 1\n[axes]\neps = [1, 3]\n", "'eps' is both fixed and an axis"},
      {"[fixed]\neps = \"three\"\n", "'eps' must be an integer"},
      {"[fixed]\nsuite = 3\n", "'suite' must be a string"},
      {"[fixed]\neps = [1, 2]\n", "must be a single value (lists go in [axes])"},
      {"[axes]\neps = 3\n", "axis 'eps' must be a list of values"},
      {"[fixed]\npolicy = \"sparse\"\n", "policy = sparse"},
      {"[axes]\nsuite = [\"passkey\", \"needle\"]\n", "unknown suite"},
      {"[fixed]\nmethod = \"svd\"\npolicy = \"esa\"\n", "method = svd"},
      {"[fixed]\nlengths = \"4k,,8k\"\n", "lengths = 4k,,8k"},
      {"[fixed]\ndepths = \"0:110:10\"\n", "outside [0, 100]"},
      {"[fixed]\nlocal = -5\n", "local = -5: must be > 0"},
      {"[fixed]\nw = -2\n", "must be >= -1"},
      {"[fixed]\npolicy = \"full\"\ndim = 16\n", "'dim' is a calibration setting, but no cell uses a projection"},
      {"[axes]\npolicy = [\"full\", \"quest\"]\nmethod = [\"closed\", \"pca\"]\n", "no cell uses a projection"},
      {"[grid]\neps = 1\n", "unknown top-level key 'grid'"},
      {"[fixed\neps = 1\n", "grid.toml:1:"},
      {"name = 3\n", "'name' must be a string"},
      {"[fixed]\nchat = \"yes\"\n", "expected on, off or auto"},
  };
  for (const auto& [toml, needle] : cases) {
    const std::string e = error_of(toml);
    EXPECT_NE(e.find(needle), std::string::npos) << "config:\n" << toml << "error: " << e;
    EXPECT_NE(e.find("grid.toml"), std::string::npos) << e;
  }
  EXPECT_THROW(sweep::load_grid("/nonexistent/grid.toml"), Error);
}

}  // namespace
}  // namespace esa
