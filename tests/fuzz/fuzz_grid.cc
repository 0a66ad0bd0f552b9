// esa sweep grid configs (TOML, lib/sweep/grid.h): syntax, keys, types, values, combinations; a
// config that parses must also expand to its cells and plan them.
#include "fuzz_support.h"
#include "sweep/cell.h"
#include "sweep/grid.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  esa::fuzz::expect_clean([&] {
    const esa::sweep::Grid grid = esa::sweep::parse_grid(text, "fuzz.toml");
    const esa::sweep::Defaults defaults{"model.gguf", "haystack.txt", "calibration.txt"};
    for (const auto& cell : grid.cells()) {
      esa::fuzz::expect_clean([&] { (void)esa::sweep::plan_cell(cell, defaults); });
    }
  });
  return 0;
}
