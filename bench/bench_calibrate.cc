// The calibration fits at the embedded model's shape (keys of 3 KV heads x 64 = 192 dims) on
// 40,960 training tokens per layer, as `esa calibrate` sees them from a 50k-token dump:
//   BM_moments      the streaming second moments of queries and keys (two float64 SYRKs; the
//                   floor is 2 * 2 * rows * 193^2 / 2 FLOPs at the machine's float64 GEMM rate);
//   BM_fit_closed   eigen-decompositions, the SVD and the maps ((in_dim + 1)^3-sized work);
//   BM_fit_pca      one eigen-decomposition.
// `esa calibrate --method closed` runs moments + fit + held-out evaluation for 30 layers, two
// layers at a time on 2 cores; its wall time (with reading qk.h5) is in bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <random>

#include "calib/fit.h"

namespace {

constexpr int64_t kDim = 192, kRows = 40960;

std::vector<float> random_rows(int64_t rows, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(size_t(rows * kDim));
  for (auto& x : v) x = d(gen);
  return v;
}

void BM_moments(benchmark::State& state) {
  const auto q = random_rows(kRows, 1), k = random_rows(kRows, 2);
  for (auto _ : state) {
    esa::calib::SecondMoments mq(kDim), mk(kDim);
    mq.add(q.data(), kRows);
    mk.add(k.data(), kRows);
    benchmark::DoNotOptimize(mq.count() + mk.count());
  }
  const double flops = 2.0 * double(kRows) * double((kDim + 1) * (kDim + 1));  // two half-GEMMs
  state.counters["GFLOP/s"] = benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_moments)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_fit_closed(benchmark::State& state) {
  const auto q = random_rows(8192, 3), k = random_rows(8192, 4);
  esa::calib::SecondMoments mq(kDim), mk(kDim);
  mq.add(q.data(), 8192);
  mk.add(k.data(), 8192);
  for (auto _ : state) benchmark::DoNotOptimize(esa::calib::fit_closed(mq, mk, state.range(0), 0).projection.dim);
}
BENCHMARK(BM_fit_closed)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_fit_pca(benchmark::State& state) {
  const auto k = random_rows(8192, 5);
  esa::calib::SecondMoments mk(kDim);
  mk.add(k.data(), 8192);
  for (auto _ : state) benchmark::DoNotOptimize(esa::calib::fit_pca(mk, state.range(0), 0).projection.dim);
}
BENCHMARK(BM_fit_pca)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
