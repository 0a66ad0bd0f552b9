// esa: the command-line entry point. Builds the CLI11 app from the per-command files and is
// the one place that catches esa::Error: one line on stderr, non-zero exit.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "commands.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/memory_limit.h"
#include "core/run_info.h"
#include "core/version.h"

namespace esa::cli {

std::string default_model_path() {
  if (const char* env = std::getenv("ESA_MODEL"); env != nullptr && *env != '\0') return env;
  return ESA_DEFAULT_MODEL;
}

std::string default_haystack_path() {
  if (const char* env = std::getenv("ESA_HAYSTACK"); env != nullptr && *env != '\0') return env;
  return ESA_DEFAULT_HAYSTACK;
}

std::string default_calibration_text_path() {
  if (const char* env = std::getenv("ESA_CALIB_TEXT"); env != nullptr && *env != '\0') return env;
  return ESA_DEFAULT_CALIB_TEXT;
}

}  // namespace esa::cli

namespace {

// An error is one line whatever it quotes: names, keys and paths from files or the command line
// may hold newlines or other control characters, shown escaped ("\n", "\x1b").
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += ' ';
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  esa::set_command_line(argc, argv);
  esa::install_interrupt_handlers();
  CLI::App app{"esa: Efficient Selective Attention for long-context LLM inference"};
  app.set_version_flag("--version", fmt::format("esa {} (git {})", esa::version(), esa::git_revision()),
                       "Print the version and git revision, then exit");
  app.add_option_function<std::string>(
         "--max-memory", [](const std::string& text) { esa::set_max_memory(esa::parse_memory_size(text)); },
         "Most memory to use, like 8G or 75% (default: 90% of physical or cgroup memory); the weights, KV cache "
         "and HDF5 reads are checked against it before they are allocated")
      ->type_name("SIZE");
  app.require_subcommand(1);
  app.fallthrough();
  esa::cli::register_info(app);
  esa::cli::register_tokenize(app);
  esa::cli::register_generate(app);
  esa::cli::register_dump(app);
  esa::cli::register_calibrate(app);
  esa::cli::register_eval(app);
  esa::cli::register_sweep(app);
  esa::cli::register_bench(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, as every other error (CLI11's own exit() adds "Run with --help ..." on a second).
    std::string what = e.what();
    for (char& c : what) c = c == '\n' ? ' ' : c;  // CLI11's own multi-line messages read as one
    fmt::print(stderr, "esa: error: {} (esa --help, or esa <command> --help)\n", one_line(what));
    return e.get_exit_code() != 0 ? e.get_exit_code() : 1;
  } catch (const esa::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "esa: error: {}\n", one_line(e.what()));
    return 1;
  } catch (const esa::Interrupted& e) {
    // Temporary outputs are gone by now (unwinding); eval and sweep keep their finished cases.
    std::fflush(stdout);
    fmt::print(stderr, "esa: {}: stopped, nothing half-written kept (esa eval --resume or a rerun of esa sweep "
               "continues from the saved cases)\n", e.what());
    return 128 + e.signal();
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "esa: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "esa: internal error: {}\n", one_line(e.what()));
    return 2;
  }
  return 0;
}
