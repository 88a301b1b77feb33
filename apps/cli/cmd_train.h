// diffuse train: the options every model's training shares, and one entry per model.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/json_file.h"
#include "io/tensor_map.h"
#include "train/dataset.h"
#include "train/run.h"

namespace diffuse::cli {

struct TrainArgs {
  std::string data, output;
  int64_t resolution = 0;  // 0: the model's default
  int64_t batch_size = 1, grad_accum = 1, steps = 0, epochs = 0;
  float lr = 1e-4f, weight_decay = 1e-2f;
  std::string lr_scheduler = "constant";
  int64_t warmup_steps = 0;
  double max_grad_norm = 1.0;
  uint64_t seed = 0;
  int64_t save_every = 500;
  int keep = 2;
  std::string log;
  bool resume = false;
  int threads = 0;
  bool ema = false;
  float ema_decay = 0.9999f;
  bool bf16 = false;
  bool quiet = false;
};

// Declares the shared options on a `diffuse train <model>` sub-command.
void add_train_options(CLI::App& sub, TrainArgs& a);
// The optimizer settings of the run (learning rate, schedule over `total_steps`, clipping, EMA,
// accumulation, the process group).
train::OptimizationOptions optimization_options(const TrainArgs& a, int64_t total_steps);
// The loop settings; `settings` holds the options that must match when resuming.
train::RunOptions run_options(const TrainArgs& a, nlohmann::json settings);
// Opens the dataset, sets the thread count and prints what will be trained.
train::ImageCaptionDataset open_training_data(const TrainArgs& a);
// Runs the training loop on this process's world; prints the last checkpoint (rank 0).
int run_task(train::TrainTask& task, int64_t dataset_size, const train::RunOptions& ro);
// Writes a text file atomically.
void write_text_atomic(const std::string& path, const std::string& text);
// Writes `tensors` as a component folder: config.json and `weights_name` (floating-point
// tensors converted to `dtype` when given).
void write_component(const std::string& dir, const nlohmann::json& config,
                     const io::TensorMap& tensors, const std::string& weights_name,
                     std::optional<DType> dtype = std::nullopt, const io::Metadata& metadata = {});
// The trained weights as named tensors: the EMA shadow when kept, else the parameters.
io::TensorMap trained_weights(const std::vector<nn::Module::ParamRef>& params,
                              const train::Optimization& optim);
// Runs `fn` with the trained weights in the parameters: the EMA shadow swapped in when kept
// (and the parameters restored afterwards, also when `fn` throws).
void with_trained_weights(const std::vector<nn::Module::ParamRef>& params,
                          const train::Optimization& optim, const std::function<void()>& fn);

void setup_train_unet(CLI::App& sub, std::function<int()>& action);
void setup_train_lora(CLI::App& sub, std::function<int()>& action);
void setup_train_vae(CLI::App& sub, std::function<int()>& action);
void setup_train_clip(CLI::App& sub, std::function<int()>& action);

}  // namespace diffuse::cli
