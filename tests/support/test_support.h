// Shared helpers for the test suites: fixture paths, the embedded model, seeded RNG.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace esa::test {

/// Absolute path of a file under tests/fixtures ($ESA_FIXTURES_DIR overrides the folder).
std::string fixture(const std::string& relative);
/// The embedded default model (SmolLM2-135M-Instruct GGUF): $ESA_MODEL, else data/models/...
std::string default_model_path();
/// True when the model exists; otherwise skips the test, or fails it when the build asked for
/// the model to be present (ESA_REQUIRE_MODEL, set by scripts/test.sh).
bool require_model();
/// Seed for random inputs: $ESA_TEST_SEED if set, else `fallback`; printed so a failure reproduces.
uint64_t test_seed(uint64_t fallback);
/// Reads a whole file; throws esa::Error naming it when it cannot.
std::string read_file(const std::string& path);
/// A fresh temporary directory for one test (removed by the OS, not by the test).
std::string temp_dir();

}  // namespace esa::test

/// Skips (or fails, see require_model) the current test when the embedded model is absent.
#define ESA_REQUIRE_MODEL_OR_SKIP()                                                          \
  do {                                                                                       \
    if (!::esa::test::require_model()) GTEST_SKIP() << "model not found: "                 \
                                                    << ::esa::test::default_model_path();   \
  } while (0)
