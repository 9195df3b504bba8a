#include "train/distributed.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <cstring>

#include "core/error.h"

#ifdef TQ_HAVE_MPI
#include <mpi.h>
#endif

namespace tq::train {
namespace {
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}
Distributed* g_instance = nullptr;
}  // namespace

Distributed& Distributed::init(int* argc, char*** argv) {
  static Distributed d;
  if (g_instance != nullptr) return d;
  g_instance = &d;
#ifdef TQ_HAVE_MPI
  if (launched_by_mpi()) {
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
      int provided = 0;
      TQ_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS,
               "[distributed] MPI_Init_thread failed");
    }
    d.active_ = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &d.rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &d.world_);
  }
#else
  (void)argc;
  (void)argv;
  TQ_CHECK(!launched_by_mpi() || std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr ||
               std::string(std::getenv("OMPI_COMM_WORLD_SIZE")) == "1",
           "[distributed] started by mpirun with several ranks, but this build has no MPI support — hint: install "
           "libopenmpi-dev and rebuild");
#endif
  return d;
}

Distributed& Distributed::get() { return init(nullptr, nullptr); }

void Distributed::allreduce_mean(const std::vector<Tensor>& tensors, size_t bucket_bytes) {
  if (world_ == 1) return;
#ifdef TQ_HAVE_MPI
  // Pack into f64 buckets (exact for f32 sums of a few ranks; one datatype for mixed lists).
  const size_t cap = std::max<size_t>(bucket_bytes / sizeof(double), 1);
  buffer_.resize(cap);
  const double inv = 1.0 / world_;
  size_t ti = 0;
  int64_t off = 0;  // element offset inside tensors[ti]
  while (ti < tensors.size()) {
    // Fill.
    struct Piece { size_t t; int64_t begin, n; };
    std::vector<Piece> pieces;
    size_t used = 0;
    while (ti < tensors.size() && used < cap) {
      const Tensor& t = tensors[ti];
      TQ_CHECK(t.is_contiguous(), "[distributed] allreduce_mean needs contiguous tensors");
      const int64_t n = std::min<int64_t>(t.numel() - off, static_cast<int64_t>(cap - used));
      if (t.dtype() == DType::f32) {
        const float* p = t.data<float>() + off;
        for (int64_t i = 0; i < n; ++i) buffer_[used + static_cast<size_t>(i)] = p[i];
      } else {
        TQ_CHECK(t.dtype() == DType::f64, "[distributed] allreduce_mean supports f32/f64 tensors");
        std::memcpy(buffer_.data() + used, t.data<double>() + off, static_cast<size_t>(n) * sizeof(double));
      }
      pieces.push_back({ti, off, n});
      used += static_cast<size_t>(n);
      off += n;
      if (off == t.numel()) {
        ++ti;
        off = 0;
      }
    }
    TQ_CHECK(MPI_Allreduce(MPI_IN_PLACE, buffer_.data(), static_cast<int>(used), MPI_DOUBLE, MPI_SUM,
                           MPI_COMM_WORLD) == MPI_SUCCESS,
             "[distributed] MPI_Allreduce failed");
    size_t pos = 0;
    for (const Piece& pc : pieces) {
      Tensor t = tensors[pc.t];
      if (t.dtype() == DType::f32) {
        float* p = t.data<float>() + pc.begin;
        for (int64_t i = 0; i < pc.n; ++i) p[i] = static_cast<float>(buffer_[pos + static_cast<size_t>(i)] * inv);
      } else {
        double* p = t.data<double>() + pc.begin;
        for (int64_t i = 0; i < pc.n; ++i) p[i] = buffer_[pos + static_cast<size_t>(i)] * inv;
      }
      pos += static_cast<size_t>(pc.n);
    }
  }
#else
  (void)tensors;
  (void)bucket_bytes;
#endif
}

double Distributed::allreduce_sum(double v) {
#ifdef TQ_HAVE_MPI
  if (world_ > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
  return v;
}

int64_t Distributed::allreduce_sum(int64_t v) {
#ifdef TQ_HAVE_MPI
  if (world_ > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
#endif
  return v;
}

double Distributed::allreduce_max(double v) {
#ifdef TQ_HAVE_MPI
  if (world_ > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
#endif
  return v;
}

void Distributed::barrier() {
#ifdef TQ_HAVE_MPI
  if (world_ > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

std::vector<std::string> Distributed::allgather(const std::string& s) {
#ifdef TQ_HAVE_MPI
  if (world_ > 1) {
    int n = static_cast<int>(s.size());
    std::vector<int> lens(static_cast<size_t>(world_)), offs(static_cast<size_t>(world_));
    MPI_Allgather(&n, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD);
    int total = 0;
    for (int r = 0; r < world_; ++r) {
      offs[static_cast<size_t>(r)] = total;
      total += lens[static_cast<size_t>(r)];
    }
    std::string all(static_cast<size_t>(total), '\0');
    MPI_Allgatherv(s.data(), n, MPI_CHAR, all.data(), lens.data(), offs.data(), MPI_CHAR, MPI_COMM_WORLD);
    std::vector<std::string> out;
    for (int r = 0; r < world_; ++r)
      out.push_back(all.substr(static_cast<size_t>(offs[static_cast<size_t>(r)]), static_cast<size_t>(lens[static_cast<size_t>(r)])));
    return out;
  }
#endif
  return {s};
}

std::string Distributed::broadcast(const std::string& s) {
#ifdef TQ_HAVE_MPI
  if (world_ > 1) {
    int n = static_cast<int>(s.size());
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::string out = s;
    out.resize(static_cast<size_t>(n));
    MPI_Bcast(out.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
    return out;
  }
#endif
  return s;
}

void Distributed::abort(int rc) {
#ifdef TQ_HAVE_MPI
  if (active_ && world_ > 1) MPI_Abort(MPI_COMM_WORLD, rc);
#endif
  std::exit(rc);
}

void Distributed::finalize() {
#ifdef TQ_HAVE_MPI
  if (active_) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    active_ = false;
  }
#endif
}

Distributed::~Distributed() { finalize(); }

}  // namespace tq::train
