// The MPI world of a data-parallel run (`mpirun -np N diffuse train ...`). Built only when CMake
// finds MPI; MPI is started on the first call of world(), and only when a launcher started this
// process, so a plain run never pays MPI's start-up.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/error.h"
#include "train/distributed.h"

// The C API only (OpenMPI and MPICH would pull in their deprecated C++ bindings otherwise).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

namespace diffuse::train {

namespace {

// Set by the launchers in every process they start: OpenMPI's mpirun, PMIx (OpenMPI, Slurm) and
// PMI (MPICH's and Intel MPI's Hydra, Slurm).
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

std::string error_string(int code) {
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, s, &n) != MPI_SUCCESS) return "MPI error code " + std::to_string(code);
  return std::string(s, size_t(n));
}

void check(int code, const char* what) {
  if (code != MPI_SUCCESS) DF_FAIL("MPI: ", what, " failed: ", error_string(code));
}

// At exit: a clean exit finalizes MPI; a failing one aborts every process of the run, since its
// peers may be waiting in a collective for it (and MPI_Finalize would wait for them).
void finish(int status) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (status != 0) MPI_Abort(MPI_COMM_WORLD, status);
  MPI_Finalize();
}

#ifdef __GLIBC__
void finish_on_exit(int status, void*) {
  finish(status);
}
void register_finish() {
  on_exit(finish_on_exit, nullptr);
}
#else
void finish_at_exit() {
  finish(0);
}
void register_finish() {
  std::atexit(finish_at_exit);
}
#endif

// Collectives take an int count: longer buffers go in chunks.
constexpr int64_t kChunk = int64_t(1) << 30;

class MpiWorld final : public Communicator {
 public:
  MpiWorld() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      // Training calls MPI from one thread at a time (the trainer's), never from the kernels'.
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
      register_finish();
      DF_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI: this MPI library provides thread level ",
               provided, ", data-parallel training needs at least MPI_THREAD_FUNNELED");
    }
    // Errors come back as codes (and become diffuse::Error) instead of aborting on the spot.
    check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* data, int64_t n) override {
    DF_CHECK(n >= 0, "all_reduce_sum: bad length ", n);
    for (int64_t off = 0; off < n; off += kChunk) {
      const int c = int(std::min(kChunk, n - off));
      check(MPI_Allreduce(MPI_IN_PLACE, data + off, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
            "MPI_Allreduce");
    }
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    DF_CHECK(bytes >= 0, "broadcast: bad length ", bytes);
    DF_CHECK(root >= 0 && root < size_, "broadcast: bad root ", root, " of ", size_, " processes");
    auto* p = static_cast<char*>(data);
    for (int64_t off = 0; off < bytes; off += kChunk) {
      const int c = int(std::min(kChunk, bytes - off));
      check(MPI_Bcast(p + off, c, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }

  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  const char* backend() const override { return "mpi"; }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace

Communicator& world() {
  static Communicator* w =
      launched_by_mpi() ? static_cast<Communicator*>(new MpiWorld) : &single_process();
  return *w;
}

bool built_with_mpi() {
  return true;
}

}  // namespace diffuse::train
