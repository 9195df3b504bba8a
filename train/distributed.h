// Data parallelism over MPI (OpenMPI): rank/world, bucketed gradient all-reduce (mean), scalar
// reductions and a barrier. Built with MPI when CMake finds it (TQ_HAVE_MPI); the same binary runs
// single-process without mpirun (MPI is only initialised when the launcher's environment says so),
// and without MPI every call is the identity for world = 1.
//
//   Distributed& d = Distributed::init(&argc, &argv);   // once, in main; idempotent
//   LoaderOptions lo; lo.rank = d.rank(); lo.world = d.world();
//   d.allreduce_mean(grads);                 // every rank ends with the average gradient
//   if (d.is_root()) write_metrics(...);
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace tq::train {

class Distributed {
 public:
  // Initialises MPI when the process was started by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or
  // PMIX_RANK set) and MPI support is compiled in; otherwise a single-process instance.
  static Distributed& init(int* argc = nullptr, char*** argv = nullptr);
  static Distributed& get();  // init() without arguments when not done yet

  int rank() const { return rank_; }
  int world() const { return world_; }
  bool is_root() const { return rank_ == 0; }
  bool active() const { return active_; }  // MPI initialised by us and world > 1 possible

  // Averages f32/f64 tensors (contiguous, each rank the same list of shapes) across ranks in
  // buckets of at most bucket_bytes (packed, one MPI_Allreduce(SUM) per bucket, then / world).
  void allreduce_mean(const std::vector<Tensor>& tensors, size_t bucket_bytes = size_t{4} << 20);
  double allreduce_sum(double v);
  int64_t allreduce_sum(int64_t v);
  double allreduce_max(double v);
  void barrier();
  // Every rank's string, in rank order (data cursors for checkpoints).
  std::vector<std::string> allgather(const std::string& s);
  // Rank 0's string on every rank.
  std::string broadcast(const std::string& s);
  [[noreturn]] void abort(int rc);  // MPI_Abort under MPI (peers would hang in a collective), else exit
  void finalize();  // MPI_Finalize when we initialised it (also at exit)
  ~Distributed();

 private:
  Distributed() = default;
  int rank_ = 0, world_ = 1;
  bool active_ = false;
  std::vector<double> buffer_;
};

}  // namespace tq::train
