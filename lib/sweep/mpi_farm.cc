#include "sweep/mpi_farm.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <thread>

#include "core/error.h"

#ifdef ESA_WITH_MPI
#include <mpi.h>
#endif

namespace esa::sweep {
namespace {

// Launchers announce themselves in the environment; a plain `esa sweep` never calls MPI_Init
// (a singleton init is slow and, on some installations, noisy).
int launcher_world_size() {
  // Open MPI's mpirun, MPICH/Hydra (and srun --mpi=pmi2), srun --mpi=pmix.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') return std::max(1, std::atoi(v));
  }
  if (std::getenv("PMIX_RANK") != nullptr) {
    const char* n = std::getenv("SLURM_NTASKS");
    return n != nullptr ? std::max(1, std::atoi(n)) : 2;
  }
  return 1;
}

#ifdef ESA_WITH_MPI
enum Tag : int { kReady = 1, kWork = 2, kResult = 3, kStop = 4 };

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, text, &n);
    ESA_FAIL("MPI {} failed: {}", what, std::string(text, size_t(n)));
  }
}

void coordinate(const MpiSession& mpi, const std::vector<int64_t>& tasks,
                const std::function<void(int64_t, int, std::string&&)>& on_result) {
  std::deque<int64_t> queue(tasks.begin(), tasks.end());
  int workers_left = mpi.size() - 1;
  std::vector<int64_t> running(size_t(mpi.size()), -1);
  std::string buffer;
  while (workers_left > 0) {
    int flag = 0;
    MPI_Status st;
    check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st), "Iprobe");
    if (flag == 0) {
      // Blocking receives busy-poll in most MPI libraries; a rank that only hands out work sleeps.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    int bytes = 0;
    check_mpi(MPI_Get_count(&st, MPI_BYTE, &bytes), "Get_count");
    buffer.resize(size_t(bytes));
    check_mpi(MPI_Recv(buffer.data(), bytes, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
              "Recv");
    const int worker = st.MPI_SOURCE;
    if (st.MPI_TAG == kResult) {
      ESA_CHECK(running[size_t(worker)] >= 0, "MPI: rank {} sent a result without a task", worker);
      on_result(running[size_t(worker)], worker, std::move(buffer));
      buffer.clear();
      running[size_t(worker)] = -1;
    }
    if (queue.empty()) {
      check_mpi(MPI_Send(nullptr, 0, MPI_BYTE, worker, kStop, MPI_COMM_WORLD), "Send");
      --workers_left;
    } else {
      const int64_t task = queue.front();
      queue.pop_front();
      running[size_t(worker)] = task;
      check_mpi(MPI_Send(&task, 1, MPI_INT64_T, worker, kWork, MPI_COMM_WORLD), "Send");
    }
  }
}

void work(const std::function<std::string(int64_t)>& run) {
  check_mpi(MPI_Send(nullptr, 0, MPI_BYTE, 0, kReady, MPI_COMM_WORLD), "Send");
  for (;;) {
    MPI_Status st;
    int64_t task = -1;
    check_mpi(MPI_Recv(&task, 1, MPI_INT64_T, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st), "Recv");
    if (st.MPI_TAG == kStop) return;
    const std::string result = run(task);
    ESA_CHECK(result.size() < size_t(1) << 31, "MPI: the result of task {} is over 2 GiB", task);
    check_mpi(MPI_Send(result.data(), int(result.size()), MPI_BYTE, 0, kResult, MPI_COMM_WORLD), "Send");
  }
}
#endif

}  // namespace

MpiSession::MpiSession() {
  const int launched = launcher_world_size();
#ifdef ESA_WITH_MPI
  if (launched <= 1) return;
  int provided = 0;
  check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "Init");
  initialized_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
#else
  ESA_CHECK(launched <= 1,
            "started as one of {} MPI ranks, but this esa was built without MPI (ESA_WITH_MPI is off; install "
            "libopenmpi-dev and rebuild): every copy would run the whole grid",
            launched);
#endif
}

MpiSession::~MpiSession() {
#ifdef ESA_WITH_MPI
  if (initialized_) MPI_Finalize();
#endif
}

void MpiSession::abort_if_distributed(const char* what) const {
  if (!distributed()) return;
#ifdef ESA_WITH_MPI
  std::fflush(stdout);
  fmt::print(stderr, "esa: error: rank {}: {}\n", rank_, what);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
#else
  (void)what;  // never distributed without MPI
#endif
}

void farm_tasks(const MpiSession& mpi, const std::vector<int64_t>& tasks,
                const std::function<std::string(int64_t)>& run,
                const std::function<void(int64_t, int, std::string&&)>& on_result) {
  if (!mpi.distributed()) {
    for (int64_t t : tasks) on_result(t, 0, run(t));
    return;
  }
#ifdef ESA_WITH_MPI
  try {
    if (mpi.rank() == 0) {
      coordinate(mpi, tasks, on_result);
    } else {
      work(run);
    }
  } catch (const std::exception& e) {
    mpi.abort_if_distributed(e.what());
  }
#endif
}

}  // namespace esa::sweep
