// esa calibrate: fit the per-layer compression projections from qk.h5 and write proj.h5
// (lib/calib/calibrate.h); prints the held-out quality per layer.
#include <fmt/format.h>
#include <omp.h>

#include <cmath>

#include "calib/calibrate.h"
#include "commands.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "policy_flags.h"

namespace esa::cli {
namespace {

struct CalibrateCliOptions {
  calib::CalibrateOptions calib;
  std::string method = "closed";
  std::string loss = "mse";
  int threads = 0;
  bool quiet = false;
};

// A flag's number must be finite and inside its interval ("" when it is; CLI11 prints the rest).
CLI::Validator finite_in(double low, bool low_open, double high, const char* what) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        try {
          size_t used = 0;
          v = std::stod(text, &used);
          if (used != text.size()) return "not a number: " + text;
        } catch (const std::exception&) {
          return "not a number: " + text;
        }
        const bool ok = std::isfinite(v) && (low_open ? v > low : v >= low) && v <= high;
        return ok ? std::string() : fmt::format("{} is not {}", text, what);
      },
      what);
}

std::string cell(double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.3f}", v); }

void run_calibrate(CalibrateCliOptions& opt) {
  cli::apply_threads(opt.threads);
  opt.calib.method = calib::parse_method(opt.method);
  ESA_CHECK(opt.loss == "mse" || opt.loss == "rank", "unknown --loss '{}' (expected mse or rank)", opt.loss);
  opt.calib.adam.loss = opt.loss == "mse" ? calib::Loss::mse : calib::Loss::rank;
  if (opt.calib.energy > 0) opt.calib.dim = 0;  // --energy chooses d' per layer
  opt.calib.progress = !opt.quiet;
  const OutputLock lock(opt.calib.output, {{"--qk", opt.calib.qk_path}});
  const calib::CalibrateReport r = calib::calibrate(opt.calib);

  const bool adam = opt.calib.method == calib::Method::adam;
  std::string header = fmt::format("{:>5} {:>4} {:>8}", "layer", "d'", "rel_err");
  for (const auto& n : r.recall_names) header += fmt::format(" {:>10}", n.substr(7));  // "recall_at_" -> "at_.."
  if (adam) header += fmt::format(" {:>12} {:>12}", "loss_start", "loss_end");
  fmt::print("held-out quality ({} method, {} training / {} held-out tokens); recall@k columns:\n",
             calib::method_name(opt.calib.method), r.train_tokens, r.heldout_tokens);
  fmt::print("{}\n", header);
  std::vector<double> sum(r.recall_names.size() + 1, 0.0);
  std::vector<int64_t> n(sum.size(), 0);
  for (const auto& l : r.layers) {
    std::string row = fmt::format("{:>5} {:>4} {:>8.4f}", l.layer, l.dim, l.metrics.rel_err);
    sum[0] += l.metrics.rel_err;
    n[0] += 1;
    for (size_t i = 0; i < l.metrics.recall.size(); ++i) {
      row += fmt::format(" {:>10}", cell(l.metrics.recall[i]));
      if (!std::isnan(l.metrics.recall[i])) sum[i + 1] += l.metrics.recall[i], n[i + 1] += 1;
    }
    if (adam) row += fmt::format(" {:>12.5g} {:>12.5g}", l.loss_start, l.loss_end);
    fmt::print("{}\n", row);
  }
  std::string mean = fmt::format("{:>5} {:>4} {:>8.4f}", "mean", "", n[0] ? sum[0] / double(n[0]) : 0.0);
  for (size_t i = 1; i < sum.size(); ++i) mean += fmt::format(" {:>10}", cell(n[i] ? sum[i] / double(n[i]) : NAN));
  fmt::print("{}\n", mean);
  fmt::print("{}: {} layers in {:.1f} s (reading {} {:.1f} s)\n", opt.calib.output, r.layers.size(), r.seconds,
             opt.calib.qk_path, r.read_seconds);
}

}  // namespace

void register_calibrate(CLI::App& app) {
  auto opt = std::make_shared<CalibrateCliOptions>();
  auto& c = opt->calib;
  CLI::App* cmd = app.add_subcommand("calibrate", "Fit the compression projections (proj.h5) from a dump (qk.h5)");
  cmd->add_option("--qk", c.qk_path, "Input qk.h5 from esa dump")->required();
  cmd->add_option("--output,-o", c.output, "Output proj.h5")->required();
  cmd->add_flag("--force", c.force, "Overwrite an existing output");
  cmd->add_option("--method", opt->method,
                  "closed: whitened-SVD optimum of the pair-averaged score MSE (with bias); adam: closed, refined "
                  "by Adam on causal pairs; pca: Loki-style PCA of the keys (baseline)")
      ->capture_default_str();
  CLI::Option* dim = cmd->add_option("--dim", c.dim, "Compressed dimension d' for every layer")->capture_default_str();
  cmd->add_option("--energy", c.energy,
                  "Instead of --dim: per layer, the smallest d' keeping this fraction of the spectrum (e.g. 0.95)")
      ->check(finite_in(0.0, true, 1.0, "a fraction in (0, 1]"))
      ->excludes(dim);
  cmd->add_option("--holdout", c.holdout, "Fraction of the sequences held out for evaluation")
      ->check(finite_in(0.0, true, 0.999, "a fraction in (0, 1)"))
      ->capture_default_str();
  cmd->add_option("--skip", c.skip, "Sink tokens per sequence never scored (the inference's --init)")
      ->capture_default_str();
  cmd->add_option("--ridge", c.ridge, "closed: relative eigenvalue floor of the regularised inverses")
      ->check(finite_in(0.0, false, 1.0, "a floor in [0, 1]"))
      ->capture_default_str();
  cmd->add_option("--epochs", c.adam.epochs, "adam: epochs")->capture_default_str();
  cmd->add_option("--batch", c.adam.batch, "adam: queries per batch")->capture_default_str();
  cmd->add_option("--batch-keys", c.adam.keys, "adam: keys per batch (pairs masked causally)")->capture_default_str();
  cmd->add_option("--lr", c.adam.lr, "adam: learning rate")
      ->check(finite_in(0.0, true, 1e6, "a positive learning rate"))
      ->capture_default_str();
  cmd->add_option("--loss", opt->loss, "adam: mse (the paper's) or rank (KL of the softmaxed scores, per query)")
      ->capture_default_str();
  cmd->add_option("--temperature", c.adam.temperature, "adam --loss rank: softmax temperature")
      ->check(finite_in(0.0, true, 1e6, "a positive temperature"))
      ->capture_default_str();
  cmd->add_option("--eval-queries", c.eval.queries, "Held-out queries per layer")->capture_default_str();
  cli::add_seed_option(cmd, c.seed, "Seed of the sampling (adam batches, evaluation queries)");
  cmd->add_option("--threads", opt->threads, "CPU threads (0: OpenMP's default, all cores)")->capture_default_str();
  cmd->add_flag("--quiet,-q", opt->quiet, "No progress on stderr");
  cmd->callback([opt] { run_calibrate(*opt); });
}

}  // namespace esa::cli
