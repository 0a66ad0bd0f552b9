// The attention-policy flags every command that runs the model shares (generate, later eval,
// sweep, bench attention): one definition so that names, defaults and help never drift.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "attention/policy.h"

namespace esa::cli {

struct PolicyFlags {
  std::string policy = "full";
  attention::Budget budget;
  int64_t eps = 1;
  std::string heads = "uniform";
  std::string score_space = "rotated";
  int64_t w = -1;
  std::string projection;
};

/// The items of a comma-separated flag value ("full,esa"); esa::Error naming `flag` for an empty
/// value or item.
std::vector<std::string> split_list(const std::string& text, const char* flag);

/// Adds --device (cpu or cuda: where the model runs) and --kv-offload to a command that runs the
/// model (parse them with esa::parse_placement).
void add_device_flags(CLI::App* cmd, std::string& device, bool& kv_offload);

/// Adds --policy, --init, --local, --select, --chunk, --eps, --heads, --score-space, --w, --proj.
void add_policy_flags(CLI::App* cmd, PolicyFlags& flags);
/// Parses and validates the flags (esa::Error on bad values).
/// Adds --seed: a whole number 0 .. 2^64 - 1, refused otherwise (CLI11 alone would wrap "-5" and
/// saturate a number past 2^64 silently: a run recorded under a seed it did not use).
void add_seed_option(CLI::App* cmd, uint64_t& seed, const std::string& help);

/// Checks --threads (0: OpenMP's default, else 1 .. 1024) and applies it.
void apply_threads(int threads);

/// `list`: one of several policies of a --policy list (--proj then applies to the esa ones only;
/// alone, --proj with another policy is refused as ignored).
attention::PolicyOptions to_policy_options(const PolicyFlags& flags, bool list = false);

}  // namespace esa::cli
