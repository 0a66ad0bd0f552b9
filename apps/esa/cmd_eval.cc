// esa eval: a retrieval suite over a grid of lengths x depths x samples x policies on the CPU
// engine; every case to results.h5 as soon as it finishes (the whole file rewritten atomically,
// so a kill loses at most the running case), --resume to continue, a table on stdout.
#include <fmt/format.h>
#include <omp.h>

#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

#include "commands.h"
#include "core/atomic_output.h"
#include "core/device.h"
#include "core/error.h"
#include "core/run_info.h"
#include "core/sha256.h"
#include "io/hdf5.h"
#include "io/provenance.h"
#include "model/model_files.h"
#include "policy_flags.h"
#include "tasks/eval.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace esa::cli {
namespace {

constexpr const char* kFormat = "esa-results";

struct EvalCliOptions {
  std::string model;
  tasks::SuiteOptions suite;
  std::string chat = "off";
  std::string lengths = "4k,8k,16k,32k";
  std::string depths = "0:100:10";
  int64_t samples = 1;
  PolicyFlags policy;
  int64_t max_new = 0;
  bool diag = false;
  std::string device = "cpu";
  bool kv_offload = false;
  std::string output;
  bool force = false, resume = false, quiet = false, dry_run = false, show_prompts = false;
  int threads = 0;
};

std::string file_sha256_or_empty(const std::string& path) { return path.empty() ? "" : sha256_file(path); }

// Everything that decides a case's result, one "key = value" line each: a resumed run must agree
// on every line both runs have (policies may be added).
std::map<std::string, std::string> case_config(const EvalCliOptions& o, const std::vector<tasks::EvalPolicy>& policies,
                                               const std::string& model_sha256, bool chat) {
  std::map<std::string, std::string> c;
  c["suite"] = o.suite.name;
  c["seed"] = fmt::format("{}", o.suite.seed);
  c["chat"] = chat ? "on" : "off";
  c["model_sha256"] = model_sha256;
  c["max_new"] = fmt::format("{}", o.max_new);
  c["diag"] = o.diag ? "on" : "off";
  if (o.suite.name == "multi-niah") {
    c["variant"] = o.suite.variant;
    c["needles"] = fmt::format("{}", o.suite.needles);
  }
  if (o.suite.name == "niah" || o.suite.name == "multi-niah") c["haystack_sha256"] = sha256_file(o.suite.haystack);
  for (const tasks::EvalPolicy& p : policies) {
    const attention::PolicyOptions& po = p.options;
    c["policy." + p.label] =
        fmt::format("init {} local {} select {} chunk {} eps {} heads {} score_space {} w {} proj {}", po.budget.init,
                    po.budget.local, po.budget.select, po.budget.chunk, po.eps, attention::head_mode_name(po.heads),
                    attention::score_space_name(po.score_space), po.query_position(),
                    po.projection.empty() ? "identity" : file_sha256_or_empty(po.projection));
  }
  return c;
}

std::string config_text(const std::map<std::string, std::string>& c) {
  std::string s;
  for (const auto& [k, v] : c) s += k + " = " + v + "\n";
  return s;
}

std::map<std::string, std::string> parse_config_text(const std::string& text) {
  std::map<std::string, std::string> c;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) {
    const size_t at = line.find(" = ");
    if (at != std::string::npos) c[line.substr(0, at)] = line.substr(at + 3);
  }
  return c;
}

// The cases of an earlier run of the same configuration (--resume).
std::vector<tasks::CaseResult> load_previous(const std::string& path, const std::map<std::string, std::string>& config,
                                             std::string& history) {
  io::H5File f = io::H5File::open(path);
  io::check_format(f, kFormat);
  ESA_CHECK(f.has_attr("/", "case_config"), "{}: no case_config attribute; cannot tell what it was run with", path);
  const auto before = parse_config_text(f.attr_string("/", "case_config"));
  for (const auto& [k, v] : config) {
    const auto it = before.find(k);
    if (it == before.end()) {
      ESA_CHECK(k.rfind("policy.", 0) == 0, "{}: was run without '{}'; this run has '{} = {}' (use another -o)", path,
                k, k, v);
      continue;  // a policy added to the grid
    }
    ESA_CHECK(it->second == v, "{}: --resume with other settings: the file has '{} = {}', this run '{} = {}' (use "
              "another -o, or --force to start over)", path, k, it->second, k, v);
  }
  history = f.has_attr("/", "history") ? f.attr_string("/", "history") : "";
  return tasks::read_cases(f, "/cases");
}

void write_results(const std::string& path, const io::Provenance& prov, const std::string& config,
                   const std::string& history, const EvalCliOptions& o, const tasks::EvalGrid& grid,
                   const std::vector<std::string>& labels, const std::vector<tasks::CaseResult>& cases) {
  AtomicOutput out(path, /*overwrite=*/true);
  io::H5File f = io::H5File::create(out.temp_path());
  io::write_provenance(f, prov);
  f.set_attr("/", "suite", o.suite.name);
  f.set_attr("/", "case_config", config);
  f.set_attr("/", "history", history);
  f.set_attr("/", "lengths", std::span<const int64_t>(grid.lengths));
  f.set_attr("/", "depths", std::span<const double>(grid.depths));
  f.set_attr("/", "samples", grid.samples);
  std::string policies;
  for (const auto& l : labels) policies += (policies.empty() ? "" : ",") + l;
  f.set_attr("/", "policies", policies);
  f.set_attr("/", "cases", int64_t(cases.size()));
  tasks::write_cases(f, "/cases", cases);
  f.close();
  out.commit();
}

void run_eval_command(EvalCliOptions& o) {
  const Placement device = parse_placement(o.device, o.kv_offload);
  ESA_CHECK(o.chat == "auto" || o.chat == "on" || o.chat == "off", "bad --chat '{}' (expected auto, on or off)", o.chat);
  ESA_CHECK(!(o.resume && o.force), "--resume and --force contradict each other (continue, or start over?)");
  apply_threads(o.threads);
  tasks::EvalGrid grid;
  grid.lengths = tasks::parse_lengths(o.lengths);
  grid.depths = tasks::parse_depths(o.depths);
  grid.samples = o.samples;
  ESA_CHECK(o.samples >= 1 && o.samples <= 100000, "--samples must be 1 to 100000, got {}", o.samples);
  ESA_CHECK(o.max_new >= 0, "--max-new must be >= 0, got {}", o.max_new);
  std::vector<tasks::EvalPolicy> policies;
  std::vector<std::string> labels;
  for (const std::string& name : split_list(o.policy.policy, "--policy")) {
    PolicyFlags one = o.policy;
    one.policy = name;
    policies.push_back({name, to_policy_options(one, /*list=*/true)});
    ESA_CHECK(std::find(labels.begin(), labels.end(), name) == labels.end(), "--policy lists '{}' twice", name);
    labels.push_back(name);
  }
  ESA_CHECK(o.policy.projection.empty() || std::any_of(policies.begin(), policies.end(), [](const auto& p) {
              return p.options.kind == attention::PolicyKind::esa;
            }),
            "--proj {} is a projection for --policy esa, which --policy {} does not list", o.policy.projection,
            o.policy.policy);
  // The output's folder and the existing-file rule before any work.
  ESA_CHECK(o.dry_run || !o.output.empty(), "esa eval: --output is required");
  if (!o.dry_run) AtomicOutput check(o.output, o.force || o.resume);
  // Held until the results are written: no second run on this output, no input overwritten.
  std::vector<RunInput> inputs = {{"--model", o.model}, {"--haystack", o.suite.haystack}};
  for (const tasks::EvalPolicy& p : policies) inputs.push_back({"--proj", p.options.projection});
  std::optional<OutputLock> lock;
  if (!o.dry_run) lock.emplace(o.output, inputs);
  if (!o.dry_run) AtomicOutput::remove_stale(o.output);  // temporaries of a killed earlier run

  const ModelSummary summary = summarize_model(o.model);
  const auto tok = text::load_tokenizer(o.model);
  const bool chat = o.chat == "on" || (o.chat == "auto" && text::detect_chat_template(tok->spec()) != text::ChatTemplate::none);
  o.suite.chat = chat;
  const auto suite = tasks::make_suite(*tok, o.suite);
  for (const tasks::EvalPolicy& p : policies) {
    // A projection fitted on another model would select garbage silently: its recorded model
    // hash must be this model's.
    if (p.options.projection.empty()) continue;
    const io::H5File proj = io::H5File::open(p.options.projection);
    if (proj.has_attr("/", "model_sha256")) {
      const std::string fitted = proj.attr_string("/", "model_sha256");
      ESA_CHECK(fitted == summary.sha256, "{}: fitted on another model (sha256 {}…), this model is {}…",
                p.options.projection, fitted.substr(0, 12), summary.sha256.substr(0, 12));
    }
  }
  const auto config = case_config(o, policies, summary.sha256, chat);
  // Every length must hold the task's fixed text: found now, not after hours of shorter cases.
  for (int64_t length : grid.lengths) suite->build(length, grid.depths.front(), 0);

  if (o.dry_run) {
    int64_t tokens = 0, n = 0;
    for (int64_t length : grid.lengths) {
      for (double depth : grid.depths) {
        for (int64_t s = 0; s < grid.samples; ++s) {
          const tasks::TaskCase c = suite->build(length, depth, s);
          fmt::print("{:>8} {:>6.1f}% #{:<3} {:>8} tokens  needle at {:>8}  answer {}  prompt {}\n", length,
                     100.0 * depth, s, c.prompt.ids.size(), c.prompt.needles.at(0).first, fmt::join(c.answers, " | "),
                     tasks::ids_sha256(c.prompt.ids).substr(0, 16));
          if (o.show_prompts) fmt::print("{}\n-----\n", tok->decode(c.prompt.ids));
          tokens += int64_t(c.prompt.ids.size()) * int64_t(policies.size());
          n += int64_t(policies.size());
        }
      }
    }
    fmt::print("{} cases ({} policies), {} prompt tokens; chat {}\n", n, policies.size(), tokens, chat ? "on" : "off");
    return;
  }

  std::vector<tasks::CaseResult> cases;
  std::string history;
  if (o.resume && std::filesystem::exists(o.output)) cases = load_previous(o.output, config, history);
  history += fmt::format("{} {}\n", utc_timestamp(), command_line());
  std::set<tasks::CaseKey> done;
  for (const auto& c : cases) done.insert(c.key);
  const int64_t resumed = int64_t(cases.size());

  const LlamaModel model = LlamaModel::load(o.model, device);
  io::Provenance prov;
  prov.format = kFormat;
  prov.model = o.model;
  prov.model_sha256 = summary.sha256;
  prov.seed = o.suite.seed;
  prov.device = placement_description(device);
  const std::string config_str = config_text(config);
  tasks::EvalOptions eo;
  eo.grid = grid;
  eo.policies = policies;
  eo.max_new = o.max_new;
  eo.diag = o.diag;
  eo.progress = !o.quiet;
  if (resumed > 0 && !o.quiet) fmt::print(stderr, "{}: resuming, {} cases already done\n", o.output, resumed);
  // A file exists from the start (even before the first case), so a run is visible and resumable.
  write_results(o.output, prov, config_str, history, o, grid, labels, cases);
  try {
    tasks::run_eval(model, *tok, *suite, eo, done, [&](tasks::CaseResult&& c) {
      cases.push_back(std::move(c));
      write_results(o.output, prov, config_str, history, o, grid, labels, cases);
    });
  } catch (...) {
    // Stopped (an error, an interrupt) before any case was saved: the file holds no result, so
    // it goes too; a failed run leaves no output behind. With cases in it, it stays: resumable.
    std::error_code ignored;
    if (cases.empty()) std::filesystem::remove(o.output, ignored);
    throw;
  }

  // The table covers this run's grid (the file may hold more from earlier runs).
  std::vector<tasks::CaseResult> shown;
  for (const auto& c : cases) {
    const bool in_grid = std::find(grid.lengths.begin(), grid.lengths.end(), c.key.length) != grid.lengths.end() &&
                         std::find(labels.begin(), labels.end(), c.key.policy) != labels.end() &&
                         c.key.sample < grid.samples &&
                         std::any_of(grid.depths.begin(), grid.depths.end(),
                                     [&](double d) { return tasks::depth_ppm(d) == c.key.depth_ppm; });
    if (in_grid) shown.push_back(c);
  }
  fmt::print("{} ({}{}), % correct over {} depth(s) x {} sample(s); chat {}:\n", o.suite.name, o.suite.name == "multi-niah"
             ? o.suite.variant + ", " + std::to_string(o.suite.needles) + " needles, " : "", fmt::join(labels, ", "),
             grid.depths.size(), grid.samples, chat ? "on" : "off");
  fmt::print("{}", tasks::accuracy_table(shown));
  fmt::print("{}: {} cases ({} run now, {} from before)\n", o.output, cases.size(), int64_t(cases.size()) - resumed,
             resumed);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto o = std::make_shared<EvalCliOptions>();
  o->model = default_model_path();
  o->suite.haystack = default_haystack_path();
  CLI::App* cmd = app.add_subcommand("eval", "Score a retrieval suite (passkey, niah, multi-niah, kv) over a grid of "
                                             "lengths, depths and policies; every case to results.h5");
  cmd->add_option("--model,-m", o->model, "Model: a .gguf file or a Hugging Face folder")->capture_default_str();
  cmd->add_option("--suite,-s", o->suite.name, "passkey, niah, multi-niah or kv")->capture_default_str();
  cmd->add_option("--variant", o->suite.variant, "multi-niah: multikey (one of N keys asked) or multivalue (all N "
                  "values of one key)")->capture_default_str();
  cmd->add_option("--needles", o->suite.needles, "multi-niah: needles in the haystack")->capture_default_str();
  cmd->add_option("--haystack", o->suite.haystack, "niah, multi-niah: essay text (scripts/fetch_corpus.sh)")
      ->capture_default_str();
  cmd->add_option("--chat", o->chat,
                  "Wrap prompts in the model's chat template: on, off, auto (on when the model has one). Off by "
                  "default, as InfiniteBench and RULER prompt; SmolLM2-135M fails passkey at 2k with it on")
      ->capture_default_str();
  cmd->add_option("--lengths", o->lengths, "Prompt lengths in tokens: 4k,8k or 3000,6000 (k = 1024)")
      ->capture_default_str();
  cmd->add_option("--depths", o->depths, "Needle depths in percent: from:to:step or a list")->capture_default_str();
  cmd->add_option("--samples", o->samples, "Cases per (length, depth), each with its own random content")
      ->capture_default_str();
  cli::add_seed_option(cmd, o->suite.seed, "Seed of every case's content");
  add_policy_flags(cmd, o->policy);
  cmd->get_option("--policy")->description("Attention policies, comma-separated: full, streaming, infllm, quest, esa, "
                                           "oracle (all with the same budget flags)");
  cmd->add_option("--max-new", o->max_new, "Tokens to generate per case (0: the suite's, enough for a correct answer)")
      ->capture_default_str();
  cmd->add_flag("--diag", o->diag, "Record per-layer selection diagnostics per case (oracle recall, attention mass, "
                "needle coverage); slow");
  add_device_flags(cmd, o->device, o->kv_offload);
  cmd->add_option("--output,-o", o->output, "Output results.h5 (required unless --dry-run)");
  cmd->add_flag("--force", o->force, "Overwrite an existing output");
  cmd->add_flag("--resume", o->resume, "Continue the run that wrote the output: its cases are kept, not redone");
  cmd->add_flag("--dry-run", o->dry_run, "Build every prompt and list the cases; run nothing");
  cmd->add_flag("--show-prompts", o->show_prompts, "With --dry-run: print every prompt's text");
  cmd->add_option("--threads", o->threads, "CPU threads (0: OpenMP's default, all cores)")->capture_default_str();
  cmd->add_flag("--quiet,-q", o->quiet, "No progress on stderr");
  cmd->callback([o] { run_eval_command(*o); });
}

}  // namespace esa::cli
