#include "support/test_support.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/file_io.h"

namespace esa::test {

std::string fixture(const std::string& relative) {
  // $ESA_FIXTURES_DIR lets prebuilt test binaries run from another checkout (scripts/gpu_check.sh).
  const char* env = std::getenv("ESA_FIXTURES_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : ESA_FIXTURES_DIR) + "/" + relative;
}

std::string default_model_path() {
  if (const char* env = std::getenv("ESA_MODEL"); env != nullptr && *env != '\0') return env;
  return ESA_DEFAULT_MODEL;
}

bool require_model() {
  if (std::filesystem::exists(default_model_path())) return true;
  if (ESA_REQUIRE_MODEL) {
    ADD_FAILURE() << "the embedded model is required but missing: " << default_model_path()
                  << " (run scripts/fetch_model.sh)";
  }
  return false;
}

uint64_t test_seed(uint64_t fallback) {
  uint64_t seed = fallback;
  if (const char* env = std::getenv("ESA_TEST_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 10);
  }
  std::printf("[ seed     ] %llu (set ESA_TEST_SEED to override)\n", static_cast<unsigned long long>(seed));
  return seed;
}

std::string read_file(const std::string& path) { return esa::read_file(path); }

std::string temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "esa_test_XXXXXX").string();
  char* dir = ::mkdtemp(pattern.data());
  ESA_CHECK(dir != nullptr, "cannot create a temporary directory");
  return dir;
}

}  // namespace esa::test
