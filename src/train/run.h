// The training loop shared by every model: the data stream (a permutation per epoch), the
// split of each global batch over the processes, gradient accumulation, the progress bar, the
// CSV log of loss per step, checkpoints every N steps and resuming from the newest one. What
// the model does with a micro-batch, and how it is written, comes from a TrainTask.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/checkpoint.h"
#include "train/distributed.h"

namespace diffuse::train {

struct RunOptions {
  std::string output;             // checkpoints, log, final model
  std::string log_csv;            // "" = OUTPUT/log.csv
  int64_t batch_size = 1;         // global batch per micro-batch (split over the processes)
  int64_t grad_accumulation = 1;  // micro-batches per optimizer step
  int64_t steps = 0;              // optimizer steps (0: from epochs)
  int64_t epochs = 0;             // used when steps is 0
  uint64_t seed = 0;
  int64_t save_every = 0;  // 0: only at the end
  int keep = 2;            // checkpoints kept (0: all)
  bool resume = false;     // continue from OUTPUT's newest checkpoint
  bool progress = true;    // progress bar on stderr
  std::string settings;    // the run's settings as text, stored and checked on resume
};

// The optimizer steps of a run over `dataset_size` samples (steps, or epochs worth of steps).
int64_t total_steps(const RunOptions& o, int64_t dataset_size);

// One micro-batch of this process: dataset indices of its samples and, for each, the seed of
// its random draws (the same whatever the number of processes).
struct MicroBatch {
  std::vector<int64_t> indices;
  std::vector<uint64_t> seeds;
};

class TrainTask {
 public:
  virtual ~TrainTask() = default;
  // Forward and backward of one micro-batch (loss averaged over its samples) through
  // optimization().backward_and_step.
  virtual TrainStepResult micro_batch(const MicroBatch& b) = 0;
  virtual Optimization& optimization() = 0;
  virtual const std::vector<nn::Module::ParamRef>& params() const = 0;
  // Writes the model as published into checkpoint folder `dir` (EMA weights when kept).
  virtual void save_model(const std::string& dir) = 0;
};

struct RunResult {
  int64_t start_step = 0, steps = 0;  // resumed from, and reached
  double last_loss = 0;
  std::string last_checkpoint;
};

// Runs the loop until total_steps; rank 0 of `comm` writes the log and checkpoints.
RunResult run_training(TrainTask& task, int64_t dataset_size, const RunOptions& o,
                       Communicator& comm);

}  // namespace diffuse::train
