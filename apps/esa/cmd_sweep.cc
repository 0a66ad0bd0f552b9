// esa sweep: run every cell of a TOML grid (lib/sweep/grid.h) — calibrating when a cell needs a
// projection (cached by content hash next to the output), then evaluating — and write each cell
// to sweep.h5 as soon as it is finished; rerunning skips the finished cells. --shard i/N runs a
// part of the grid (Slurm job arrays); --merge joins the parts.
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "calib/calibrate.h"
#include "calib/qk_dump.h"
#include "commands.h"
#include "core/device.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/sha256_cache.h"
#include "model/model_files.h"
#include "sweep/cell.h"
#include "sweep/grid.h"
#include "sweep/mpi_farm.h"
#include "sweep/sweep_file.h"
#include "text/tokenizer.h"

#include "policy_flags.h"

namespace esa::cli {
namespace {

struct SweepCliOptions {
  std::string config;
  std::string output;
  std::string shard;
  std::string cache;
  std::vector<std::string> merge;
  sweep::Defaults defaults;
  bool dry_run = false, force = false, quiet = false;
  int threads = 0;
  std::string device = "cpu";
  bool kv_offload = false;
};

// The loaded model of the last cell (cells of one model run back to back without reloading).
struct LoadedModel {
  std::string path, sha256;
  std::unique_ptr<text::Tokenizer> tok;
  std::unique_ptr<LlamaModel> model;
  Placement device;
};

void load(LoadedModel& m, const std::string& path) {
  if (m.path == path && m.model) return;
  m.model.reset();
  m.sha256 = summarize_model(path).sha256;
  m.tok = text::load_tokenizer(path);
  m.model = std::make_unique<LlamaModel>(LlamaModel::load(path, m.device));
  m.path = path;
}

// The projection a cell needs: dump and calibrate once per recipe, cached by content hash.
std::string ensure_projection(const sweep::ProjectionRecipe& r, LoadedModel& m, const std::string& cache, bool quiet) {
  const std::string proj = cache + "/proj-" + r.projection_key(m.sha256) + ".h5";
  if (std::filesystem::exists(proj)) return proj;
  const std::string qk = cache + "/qk-" + r.dump_key(m.sha256) + ".h5";
  if (!std::filesystem::exists(qk)) {
    calib::DumpOptions d;
    d.text_path = r.calib_text;
    d.output = qk;
    d.tokens = r.calib_tokens;
    d.seq_len = r.calib_seq_len;
    d.score_space = r.score_space;
    d.w = r.w;
    d.progress = !quiet;
    d.force = true;  // content-addressed: another rank may have written the same file meanwhile
    io::Provenance prov;
    prov.model = m.path;
    prov.model_sha256 = m.sha256;
    prov.device = placement_description(m.device);
    calib::dump_qk(*m.model, *m.tok, prov, d);
  }
  calib::CalibrateOptions c;
  c.qk_path = qk;
  c.output = proj;
  c.method = calib::parse_method(r.method);
  c.dim = r.dim;
  c.adam.epochs = r.epochs;
  c.adam.loss = r.loss == "rank" ? calib::Loss::rank : calib::Loss::mse;
  c.progress = !quiet;
  c.force = true;
  calib::calibrate(c);
  return proj;
}

// One cell: calibrate if it needs a projection (cached), then evaluate. An esa::Error becomes the
// cell's recorded error (the sweep goes on; a rerun tries the cell again).
sweep::CellRecord run_cell(const sweep::Cell& cell, sweep::CellPlan plan, LoadedModel& model, const std::string& cache,
                           bool quiet) {
  const auto t0 = std::chrono::steady_clock::now();
  sweep::CellRecord r;
  r.cell = cell;
  try {
    load(model, plan.model);
    r.model_sha256 = model.sha256;
    if (plan.needs_projection) {
      std::filesystem::create_directories(cache);
      plan.policy.options.projection = ensure_projection(plan.recipe, model, cache, quiet);
      r.projection = plan.policy.options.projection;
    }
    const auto suite = tasks::make_suite(*model.tok, plan.suite);
    tasks::EvalOptions eo;
    eo.grid = plan.grid;
    eo.policies = {plan.policy};
    eo.max_new = plan.max_new;
    eo.progress = !quiet;
    tasks::run_eval(*model.model, *model.tok, *suite, eo, {},
                    [&](tasks::CaseResult&& c) { r.cases.push_back(std::move(c)); });
  } catch (const Error& e) {
    r.status = "error";
    r.error = e.what();
    r.cases.clear();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string varying(const sweep::Cell& c, const std::vector<std::string>& axes) {
  std::string s;
  for (const auto& a : axes) s += (s.empty() ? "" : " ") + a + "=" + c.params.at(a);
  return s.empty() ? "(fixed)" : s;
}

void print_table(const std::vector<sweep::CellRecord>& records, const std::vector<std::string>& axes) {
  fmt::print("{:>5} {:<16} {:<40} {:>8} {:>6} {:>8}\n", "cell", "id", "settings", "correct", "cases", "seconds");
  for (const auto& r : records) {
    std::string acc = "error";
    if (r.status == "ok") {
      int64_t ok = 0;
      for (const auto& c : r.cases) ok += c.correct ? 1 : 0;
      acc = r.cases.empty() ? "-" : fmt::format("{:.1f}%", 100.0 * double(ok) / double(r.cases.size()));
    }
    fmt::print("{:>5} {:<16} {:<40} {:>8} {:>6} {:>8.1f}\n", r.cell.index, r.cell.id, varying(r.cell, axes), acc,
               r.cases.size(), r.seconds);
  }
}

void run_merge(const SweepCliOptions& o) {
  ESA_CHECK(!o.output.empty(), "esa sweep --merge: --output is required");
  std::vector<RunInput> inputs;
  for (const std::string& part : o.merge) inputs.push_back({"--merge", part});
  const OutputLock lock(o.output, inputs);
  std::vector<std::vector<sweep::CellRecord>> parts;
  sweep::SweepHeader header;
  for (size_t i = 0; i < o.merge.size(); ++i) {
    sweep::SweepHeader h;
    parts.push_back(sweep::read_sweep(o.merge[i], &h));
    if (i == 0) header = h;
    // Shards of one grid carry the same config text; anything else is almost surely a mix-up.
    ESA_CHECK(h.config == header.config, "{}: made from another grid config than {} (merge shards of one grid)",
              o.merge[i], o.merge[0]);
  }
  const auto merged = sweep::merge_cells(parts, o.merge);
  header.provenance.model = header.provenance.model.empty() ? "(per cell)" : header.provenance.model;
  sweep::write_sweep(o.output, header, merged, o.force);
  int64_t errors = 0;
  for (const auto& r : merged) errors += r.status == "ok" ? 0 : 1;
  fmt::print("{}: {} cells from {} files ({} with errors); the grid has {}\n", o.output, merged.size(), o.merge.size(),
             errors, header.grid_cells);
}

// The files the planned cells read (sweep::SweepHeader::inputs), each hashed once.
std::string cell_inputs(const std::vector<sweep::CellPlan>& plans) {
  std::set<std::pair<std::string, std::string>> files;  // (role, path)
  for (const sweep::CellPlan& p : plans) {
    files.insert({"model", p.model});
    if (!p.suite.haystack.empty()) files.insert({"haystack", p.suite.haystack});
    if (p.needs_projection) files.insert({"calib-text", p.recipe.calib_text});
  }
  std::string out;
  for (const auto& [role, path] : files) {
    const std::string sha = role == "model" ? summarize_model(path).sha256 : sha256_file_cached(path);
    out += fmt::format("{} {} sha256 {}\n", role, path, sha);
  }
  return out;
}

// A resumed sweep must read the files the finished cells read.
void check_same_inputs(const std::string& output, const std::string& before, const std::string& now) {
  if (before == now) return;
  ESA_CHECK(!before.empty(), "{}: written by an esa that did not record its input files; their contents cannot be "
            "checked (use another -o, or --force to start over)", output);
  auto lines = [](const std::string& text) {
    std::set<std::string> out;
    std::stringstream ss(text);
    for (std::string line; std::getline(ss, line);) out.insert(line);
    return out;
  };
  const std::set<std::string> a = lines(before), b = lines(now);
  std::string was, is;
  for (const auto& l : a) was += b.count(l) == 0 ? (was.empty() ? "" : "; ") + l : "";
  for (const auto& l : b) is += a.count(l) == 0 ? (is.empty() ? "" : "; ") + l : "";
  ESA_FAIL("{}: the finished cells read other files (the file has: {}; this run: {}); use another -o, or --force to "
           "start over", output, was.empty() ? "-" : was, is.empty() ? "-" : is);
}

void run_grid(SweepCliOptions& o, const sweep::MpiSession& mpi) {
  ESA_CHECK(!o.config.empty(), "esa sweep: --config is required (or --merge)");
  const sweep::Grid grid = sweep::load_grid(o.config);
  std::vector<std::string> axes;
  for (const auto& a : grid.axes) axes.push_back(a.first);
  const std::vector<sweep::Cell> all = grid.cells();
  std::vector<sweep::Cell> cells = all;
  if (!o.shard.empty()) {
    const auto [i, n] = sweep::parse_shard(o.shard);
    cells = sweep::shard_cells(all, i, n);
  }
  // Every cell's settings are checked before anything runs.
  std::vector<sweep::CellPlan> plans;
  for (const auto& c : cells) plans.push_back(sweep::plan_cell(c, o.defaults));
  if (o.dry_run && mpi.rank() == 0) {
    for (size_t i = 0; i < cells.size(); ++i) {
      fmt::print("{:>5} {:<16} {}{}\n", cells[i].index, cells[i].id, varying(cells[i], axes),
                 plans[i].needs_projection ? "  (calibrates)" : "");
    }
    fmt::print("{} of {} cells{}\n", cells.size(), all.size(), o.shard.empty() ? "" : " (shard " + o.shard + ")");
  }
  if (o.dry_run) return;
  ESA_CHECK(!o.output.empty(), "esa sweep: --output is required");
  std::optional<OutputLock> lock;  // rank 0 writes the output
  if (mpi.rank() == 0) {
    AtomicOutput check(o.output, /*overwrite=*/true);  // the folder exists and is writable
    lock.emplace(o.output, std::vector<RunInput>{{"--config", o.config},
                                                 {"--model", o.defaults.model},
                                                 {"--haystack", o.defaults.haystack},
                                                 {"--calib-text", o.defaults.calib_text}});
    AtomicOutput::remove_stale(o.output);
  }
  sweep::SweepHeader header;
  header.config = read_file(o.config);
  header.name = grid.name;
  header.axes = axes;
  header.grid_cells = int64_t(all.size());
  header.provenance.model = o.defaults.model;
  const Placement device = parse_placement(o.device, o.kv_offload);
  header.provenance.device = placement_description(device);
  header.inputs = cell_inputs(plans);
  std::vector<sweep::CellRecord> records;
  // Workers receive their cells from rank 0, which knows what is done.
  if (mpi.rank() == 0 && std::filesystem::exists(o.output) && !o.force) {
    sweep::SweepHeader before;
    std::vector<sweep::CellRecord> finished = sweep::read_sweep(o.output, &before);
    // Finished cells count only for the same grid over the same files: a cell's id names its
    // settings, not the contents of the model or the texts it read.
    ESA_CHECK(before.config == header.config, "{}: made from another grid config than {} (use another -o, or --force "
              "to start over)", o.output, o.config);
    check_same_inputs(o.output, before.inputs, header.inputs);
    for (auto& r : finished) {
      if (r.status == "ok") records.push_back(std::move(r));  // failed cells run again
    }
  }
  std::set<std::string> done;
  for (const auto& r : records) done.insert(r.cell.id);
  const std::string cache = o.cache.empty() ? o.output + ".cache" : o.cache;
  std::vector<int64_t> todo;  // positions in `cells`
  for (size_t i = 0; i < cells.size(); ++i) {
    if (done.count(cells[i].id) == 0) todo.push_back(int64_t(i));
  }
  const bool coordinator = mpi.rank() == 0;
  if (!o.quiet && coordinator && !done.empty()) fmt::print(stderr, "{}: {} cells already complete\n", o.output, done.size());
  if (!o.quiet && mpi.distributed() && coordinator) {
    fmt::print(stderr, "sweep: {} cells over {} MPI workers (rank 0 hands out cells and writes {})\n", todo.size(),
               mpi.size() - 1, o.output);
  }
  // Within-cell progress only where one process runs the cells: N ranks' lines would interleave.
  const bool cell_progress = !o.quiet && !mpi.distributed();
  Progress progress("sweep", int64_t(todo.size()), "cells", !o.quiet && coordinator);
  LoadedModel model;
  model.device = device;
  int64_t ran = 0;
  auto record = [&](sweep::CellRecord&& r, int worker) {
    if (header.provenance.model_sha256.empty()) header.provenance.model_sha256 = r.model_sha256;
    if (r.status != "ok") progress.note(fmt::format("cell {} failed: {}", r.cell.index, r.error));
    if (mpi.distributed()) {
      progress.note(fmt::format("cell {} ({}) done by rank {}", r.cell.index, varying(r.cell, axes), worker));
    }
    records.push_back(std::move(r));
    sweep::write_sweep(o.output, header, records, /*overwrite=*/true);
    ++ran;
    progress.advance(1);
  };
  if (mpi.distributed()) {
    sweep::farm_tasks(
        mpi, todo,
        [&](int64_t i) {
          return sweep::cell_to_bytes(run_cell(cells[size_t(i)], plans[size_t(i)], model, cache, !cell_progress));
        },
        [&](int64_t, int worker, std::string&& bytes) { record(sweep::cell_from_bytes(bytes), worker); });
    if (!coordinator) return;  // the coordinator reports
  } else {
    for (const int64_t i : todo) {
      progress.set_what(fmt::format("sweep cell {} ({})", cells[size_t(i)].index, varying(cells[size_t(i)], axes)));
      record(run_cell(cells[size_t(i)], plans[size_t(i)], model, cache, !cell_progress), 0);
    }
  }
  progress.finish();
  std::sort(records.begin(), records.end(),
            [](const auto& a, const auto& b) { return std::tie(a.cell.index, a.cell.id) < std::tie(b.cell.index, b.cell.id); });
  print_table(records, axes);
  int64_t errors = 0;
  for (const auto& r : records) errors += r.status == "ok" ? 0 : 1;
  fmt::print("{}: {} cells ({} run now, {} from before, {} failed)\n", o.output, records.size(), ran,
             int64_t(records.size()) - ran, errors);
  ESA_CHECK(errors == 0, "{}: {} cells failed (their errors are in the file; rerun to retry them)", o.output, errors);
}

void run_sweep(SweepCliOptions& o) {
  apply_threads(o.threads);
  if (!o.merge.empty()) return run_merge(o);
  // Under mpirun every rank validates the grid and plans the same cells; rank 0 alone reads and
  // writes the output, and an error on any rank stops them all.
  const sweep::MpiSession mpi;
  try {
    run_grid(o, mpi);
  } catch (const std::exception& e) {
    mpi.abort_if_distributed(e.what());
    throw;
  }
}

}  // namespace

void register_sweep(CLI::App& app) {
  auto o = std::make_shared<SweepCliOptions>();
  o->defaults.model = default_model_path();
  o->defaults.haystack = default_haystack_path();
  o->defaults.calib_text = default_calibration_text_path();
  CLI::App* cmd = app.add_subcommand("sweep", "Run an ablation grid (TOML: fixed settings + axes) of eval cells, "
                                              "calibrating where a cell needs it; every cell to sweep.h5");
  CLI::Option* config = cmd->add_option("--config,-c", o->config, "Grid config (TOML), e.g. experiments/paper_eps.toml");
  cmd->add_option("--output,-o", o->output, "Output sweep.h5 (an existing one is resumed: finished cells are kept)");
  CLI::Option* shard =
      cmd->add_option("--shard", o->shard, "Run only shard i of N (i/N, cells index % N == i - 1), for job arrays");
  cmd->add_option("--merge", o->merge, "Join sweep files (shards) into --output instead of running")
      ->expected(1, -1)
      ->excludes(config)
      ->excludes(shard);
  cmd->add_option("--cache", o->cache, "Folder for calibration dumps and projections (default: <output>.cache)");
  cmd->add_option("--model,-m", o->defaults.model, "Model for cells that do not set one")->capture_default_str();
  cmd->add_option("--haystack", o->defaults.haystack, "Essay haystack for cells that do not set one")
      ->capture_default_str();
  cmd->add_option("--calib-text", o->defaults.calib_text, "Calibration text for cells that do not set one")
      ->capture_default_str();
  cmd->add_flag("--dry-run", o->dry_run, "List the cells (of the shard) and run nothing");
  cmd->add_flag("--force", o->force, "Start over: ignore the finished cells of an existing output");
  add_device_flags(cmd, o->device, o->kv_offload);
  cmd->add_option("--threads", o->threads, "CPU threads (0: OpenMP's default, all cores)")->capture_default_str();
  cmd->add_flag("--quiet,-q", o->quiet, "No progress on stderr");
  cmd->callback([o] { run_sweep(*o); });
}

}  // namespace esa::cli
