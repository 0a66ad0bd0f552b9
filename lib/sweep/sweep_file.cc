// sweep.h5 reading and writing; see sweep_file.h.
#include "sweep/sweep_file.h"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/file_io.h"

namespace esa::sweep {
namespace {

constexpr const char* kFormat = "esa-sweep";

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

void write_sweep(const std::string& path, const SweepHeader& h, const std::vector<CellRecord>& cells, bool overwrite) {
  AtomicOutput out(path, overwrite);
  io::H5File f = io::H5File::create(out.temp_path());
  io::Provenance prov = h.provenance;
  prov.format = kFormat;
  io::write_provenance(f, prov);
  f.set_attr("/", "config", h.config);
  f.set_attr("/", "name", h.name);
  f.set_attr("/", "axes", join(h.axes));
  f.set_attr("/", "grid_cells", h.grid_cells);
  f.set_attr("/", "inputs", h.inputs);
  f.create_group("/cells");
  for (const CellRecord& r : cells) {
    const std::string g = "/cells/" + r.cell.id;
    f.create_group(g);
    f.set_attr(g, "index", r.cell.index);
    f.set_attr(g, "status", r.status);
    f.set_attr(g, "error", r.error);
    f.set_attr(g, "seconds", r.seconds);
    f.set_attr(g, "model_sha256", r.model_sha256);
    f.set_attr(g, "projection", r.projection);
    std::vector<std::string> keys;
    for (const auto& [k, v] : r.cell.params) {
      keys.push_back(k);
      f.set_attr(g, k, v);
    }
    f.set_attr(g, "params", join(keys));
    if (r.status == "ok") tasks::write_cases(f, g + "/cases", r.cases);
  }
  f.close();
  out.commit();
}

std::vector<CellRecord> read_sweep(const std::string& path, SweepHeader* header) {
  const io::H5File f = io::H5File::open(path);
  io::check_format(f, kFormat);
  if (header != nullptr) {
    header->config = f.attr_string("/", "config");
    header->name = f.attr_string("/", "name");
    header->axes = split(f.attr_string("/", "axes"));
    header->grid_cells = f.attr_int("/", "grid_cells");
    header->inputs = f.has_attr("/", "inputs") ? f.attr_string("/", "inputs") : "";
    header->provenance.model = f.attr_string("/", "model");
    header->provenance.model_sha256 = f.attr_string("/", "model_sha256");
    header->provenance.seed = uint64_t(f.attr_int("/", "seed"));
  }
  std::vector<CellRecord> out;
  ESA_CHECK(f.exists("/cells"), "{}: no /cells group", path);
  for (const std::string& id : f.members("/cells")) {
    const std::string g = "/cells/" + id;
    CellRecord r;
    r.cell.id = id;
    r.cell.index = f.attr_int(g, "index");
    r.status = f.attr_string(g, "status");
    ESA_CHECK(r.status == "ok" || r.status == "error", "{}: {} has status '{}'", path, g, r.status);
    r.error = f.attr_string(g, "error");
    r.seconds = f.attr_double(g, "seconds");
    r.model_sha256 = f.attr_string(g, "model_sha256");
    r.projection = f.attr_string(g, "projection");
    for (const std::string& k : split(f.attr_string(g, "params"))) r.cell.params[k] = f.attr_string(g, k);
    if (r.status == "ok") r.cases = tasks::read_cases(f, g + "/cases");
    out.push_back(std::move(r));
  }
  return out;
}

namespace {
// Two finished copies of a cell agree when they ran the same model and produced the same answers
// (timings differ between runs and do not count).
bool same_results(const CellRecord& a, const CellRecord& b) {
  if (a.model_sha256 != b.model_sha256 || a.projection != b.projection || a.cases.size() != b.cases.size()) return false;
  for (size_t i = 0; i < a.cases.size(); ++i) {
    const tasks::CaseResult &x = a.cases[i], &y = b.cases[i];
    if (x.prompt_sha256 != y.prompt_sha256 || x.generated != y.generated || x.correct != y.correct ||
        !(x.score == y.score || (std::isnan(x.score) && std::isnan(y.score)))) {
      return false;
    }
  }
  return true;
}
}  // namespace

std::vector<CellRecord> merge_cells(const std::vector<std::vector<CellRecord>>& parts,
                                    const std::vector<std::string>& names) {
  std::map<std::string, std::pair<CellRecord, size_t>> by_id;  // the record and the part it came from
  for (size_t p = 0; p < parts.size(); ++p) {
    for (const CellRecord& r : parts[p]) {
      const auto it = by_id.find(r.cell.id);
      if (it != by_id.end() && it->second.first.status == "ok" && r.status == "ok") {
        auto name = [&](size_t i) { return i < names.size() ? names[i] : fmt::format("part {}", i); };
        ESA_CHECK(same_results(it->second.first, r), "cell {} ({}): {} and {} hold different results for it (merge "
                  "shards of one run, or rerun the cell)", r.cell.index, r.cell.id, name(it->second.second), name(p));
        continue;
      }
      if (it == by_id.end() || (it->second.first.status != "ok" && r.status == "ok")) by_id[r.cell.id] = {r, p};
    }
  }
  std::vector<CellRecord> out;
  for (auto& [id, r] : by_id) out.push_back(std::move(r.first));
  std::sort(out.begin(), out.end(), [](const CellRecord& a, const CellRecord& b) {
    return std::tie(a.cell.index, a.cell.id) < std::tie(b.cell.index, b.cell.id);
  });
  return out;
}

// Through a temporary file of the existing format rather than a second serialisation to keep in step
// with it; a cell is a few KB and takes milliseconds to write.
namespace {
std::string temp_cell_path() {
  static std::atomic<int64_t> counter{0};
  return (std::filesystem::temp_directory_path() /
          fmt::format("esa-cell-{}-{}.h5", ::getpid(), counter.fetch_add(1)))
      .string();
}
}  // namespace

std::string cell_to_bytes(const CellRecord& cell) {
  const std::string path = temp_cell_path();
  SweepHeader h;
  h.name = "cell";
  write_sweep(path, h, {cell}, /*overwrite=*/true);
  std::string bytes = read_file(path);
  std::filesystem::remove(path);
  return bytes;
}

CellRecord cell_from_bytes(const std::string& bytes) {
  const std::string path = temp_cell_path();
  {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), std::streamsize(bytes.size()));
    ESA_CHECK(f.good(), "{}: cannot write a received cell", path);
  }
  std::vector<CellRecord> cells;
  try {
    cells = read_sweep(path);
  } catch (...) {
    std::filesystem::remove(path);
    throw;
  }
  std::filesystem::remove(path);
  ESA_CHECK(cells.size() == 1, "a received cell holds {} cells, expected 1", cells.size());
  return std::move(cells[0]);
}

}  // namespace esa::sweep
