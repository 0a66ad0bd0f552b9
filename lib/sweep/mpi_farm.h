// Dynamic distribution of independent tasks over MPI ranks (`mpirun -np N esa sweep ...`), built
// when ESA_WITH_MPI is on. Rank 0 is the coordinator: it hands out one task index at a time to
// whichever worker asks and receives each result as bytes (so that it alone writes the output);
// ranks 1..N-1 run the tasks. A dedicated coordinator keeps the hand-out responsive however long a
// task takes; it sleeps between polls, so an oversubscribed rank 0 costs a core almost nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace esa::sweep {

/// MPI for the lifetime of the object: initialised when this process was started by an MPI
/// launcher (mpirun, mpiexec, srun with PMI) and finalised by the destructor; otherwise inert
/// (one process, rank 0 of 1). Throws esa::Error when a launcher started several copies of a
/// build without MPI (each would run the whole grid and write the same file).
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  bool distributed() const { return size_ > 1; }  // at least one worker besides the coordinator
  int rank() const { return rank_; }
  int size() const { return size_; }

  /// When distributed: prints "esa: error: rank R: <what>" and aborts every rank (MPI_Abort), since
  /// a rank that fails alone leaves the others waiting for it forever. Otherwise does nothing
  /// (the caller throws as usual).
  void abort_if_distributed(const char* what) const;

 private:
  bool initialized_ = false;
  int rank_ = 0, size_ = 1;
};

/// Runs `tasks` over the session's ranks (call it on every rank with the same `tasks`). Workers
/// call `run(task)` and send what it returns; the coordinator calls `on_result(task, worker rank,
/// bytes)` in the order results arrive. Returns when every task is done and every worker released.
/// An exception in `run` or `on_result` aborts the whole job (MPI_Abort) after printing it, since
/// the other ranks would otherwise wait forever.
void farm_tasks(const MpiSession& mpi, const std::vector<int64_t>& tasks,
                const std::function<std::string(int64_t task)>& run,
                const std::function<void(int64_t task, int worker, std::string&& result)>& on_result);

}  // namespace esa::sweep
