// Shared by the libFuzzer harnesses (tests/fuzz/README.md). esa's readers take paths (they map
// files), so each input is written to a per-process temporary file first. The contract under test:
// any input either parses or throws esa::Error — every other exception, crash, leak, or sanitizer
// report is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"

namespace esa::fuzz {

/// A folder of this process for temporary inputs (in /dev/shm when present: no disk writes).
inline const std::filesystem::path& work_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::filesystem::path d = base / ("esa-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(work_dir(), ec); });
    return d;
  }();
  return dir;
}

/// tests/fixtures, or $ESA_FIXTURES_DIR (harnesses copied to another machine).
inline std::string fixtures_dir() {
  const char* env = std::getenv("ESA_FIXTURES_DIR");
  return env != nullptr && *env != '\0' ? env : ESA_FIXTURES_DIR;
}

/// The embedded model, or $ESA_MODEL.
inline std::string model_path() {
  const char* env = std::getenv("ESA_MODEL");
  return env != nullptr && *env != '\0' ? env : ESA_DEFAULT_MODEL;
}

/// Writes the input to work_dir()/name and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = (work_dir() / name).string();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!f) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

/// Runs `fn`; an esa::Error (a clean rejection) is expected, anything else escapes to libFuzzer.
template <typename Fn>
void expect_clean(Fn&& fn) {
  try {
    fn();
  } catch (const esa::Error& e) {
    // ESA_FUZZ_VERBOSE=1: print each rejection (which check caught an input, when replaying one).
    static const bool verbose = std::getenv("ESA_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
  }
}

}  // namespace esa::fuzz
