// Subcommand registration: each cmd_<name>.cc binds one options struct to CLI11 and calls one
// library function. main.cc calls every register_* below.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace esa::cli {

void register_info(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_bench(CLI::App& app);
void register_generate(CLI::App& app);
void register_dump(CLI::App& app);
void register_calibrate(CLI::App& app);
void register_eval(CLI::App& app);
void register_sweep(CLI::App& app);
/// `esa bench attention`, added under the bench command.
void register_bench_attention(CLI::App& bench);

/// The embedded default model: $ESA_MODEL, else data/models/SmolLM2-135M-Instruct.Q4_1.gguf
/// of the source tree esa was built from.
std::string default_model_path();
/// The essay haystack of the niah suites: $ESA_HAYSTACK, else data/corpus/haystack.txt.
std::string default_haystack_path();
/// The calibration text: $ESA_CALIB_TEXT, else data/corpus/calibration.txt.
std::string default_calibration_text_path();

}  // namespace esa::cli
