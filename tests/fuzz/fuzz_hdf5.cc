// esa's HDF5 readers on arbitrary bytes: sweep.h5 (read_sweep), results.h5 (/cases), proj.h5
// (read_projection against tests/fixtures/model/tiny_llama's config) and qk.h5 (calibrate reads it).
// Crashes inside libhdf5 itself are reported upstream-style in tests/fuzz/README.md.
#include "attention/projection_file.h"
#include "calib/calibrate.h"
#include "fuzz_support.h"
#include "io/hdf5.h"
#include "model/config.h"
#include "sweep/sweep_file.h"
#include "tasks/eval.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const esa::ModelConfig config =
      esa::config_from_hf_json(esa::fuzz::fixtures_dir() + "/model/tiny_llama/config.json");
  const std::string path = esa::fuzz::write_input("input.h5", data, size);
  esa::fuzz::expect_clean([&] { (void)esa::sweep::read_sweep(path); });
  esa::fuzz::expect_clean([&] {
    const esa::io::H5File f = esa::io::H5File::open(path);
    (void)esa::tasks::read_cases(f, "/cases");
  });
  esa::fuzz::expect_clean([&] {
    esa::attention::PolicyOptions options;
    options.kind = esa::attention::PolicyKind::esa;
    (void)esa::attention::read_projection(path, config, options);
  });
  esa::fuzz::expect_clean([&] {
    esa::calib::CalibrateOptions o;
    o.qk_path = path;
    o.output = (esa::fuzz::work_dir() / "proj.h5").string();
    o.force = true;
    o.dim = 2;
    o.skip = 0;
    o.progress = false;
    (void)esa::calib::calibrate(o);
  });
  return 0;
}
