// Data-parallel training: the processes of one training run and the collective operations they
// need. One process is a world of size 1 (every operation is the identity); with OpenMPI
// (`mpirun -np N diffuse train ...`, when diffuse is built with MPI) each process takes its share
// of every batch and the gradients are averaged over all of them before each optimizer step.
// GPUs will join through NCCL behind the same interface.
#pragma once
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace diffuse::train {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;  // 0 .. size() - 1; rank 0 writes logs and checkpoints
  virtual int size() const = 0;
  // Sums `n` floats element-wise over all processes, in place (every process gets the sum).
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  // Copies `n` bytes of rank `root` to every process.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  virtual const char* backend() const = 0;  // "single", "mpi"

  // Averages the gradients of `params` (f32) over all processes, in place; parameters without a
  // gradient are skipped (they must be the same ones on every process).
  void average_gradients(const std::vector<Tensor*>& params);
  // The mean of one value over all processes (e.g. a loss for the log).
  double mean(double value);
};

// The processes of this run: MPI's world when built with MPI and launched by mpirun (set up on
// first use, torn down at exit), else a single process. A plain run never starts MPI. At exit
// MPI is finalized when the process exits with status 0; any other status aborts every process
// of the run (peers may be waiting in a collective).
Communicator& world();
// A world of one process (every operation the identity), whatever the build.
Communicator& single_process();
// Whether this build can run data-parallel over MPI.
bool built_with_mpi();

// The samples of a global batch of `global_batch` that process `rank` of `size` takes: a
// contiguous range [begin, end). Throws an Error when the batch does not split evenly.
struct BatchShare {
  int64_t begin = 0, end = 0;
};
BatchShare batch_share(int64_t global_batch, int rank, int size);

}  // namespace diffuse::train
