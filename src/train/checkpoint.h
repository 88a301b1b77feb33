// Training checkpoints: OUTPUT/checkpoint-STEP/ holds the model in its published layouts (what
// the model's trainer writes) and training_state.safetensors (the trained weights, AdamW's
// moments, the EMA shadow and the position of the run), so that a run killed at any moment
// resumes from its newest checkpoint with the same loss curve. Checkpoints are written into a
// temporary folder and renamed into place; OUTPUT/last names the newest.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nn/module.h"
#include "train/optimization.h"

namespace diffuse::train {

// Where a run is, saved with its checkpoints.
struct RunPosition {
  int64_t step = 0;     // optimizer steps done
  int64_t samples = 0;  // samples drawn from the data stream
  int64_t epoch = 0;    // epoch of the last sample drawn
  double seconds = 0;   // training time so far (all sessions)
};

// The whole training state: weights (f32, named), optimizer, EMA, position, and `options`
// (JSON text of the run's settings, checked on resume).
void save_training_state(const std::string& path, const std::vector<nn::Module::ParamRef>& params,
                         Optimization& optim, const RunPosition& pos, const std::string& options);
// Restores what save_training_state wrote into `params` and `optim`; returns the position and
// puts the saved settings into *saved_options.
RunPosition load_training_state(const std::string& path,
                                const std::vector<nn::Module::ParamRef>& params,
                                Optimization& optim, std::string* saved_options = nullptr);

// Writes OUTPUT/checkpoint-STEP atomically: `fill(tmp_dir)` writes the contents into a fresh
// temporary folder, which is then renamed into place; OUTPUT/last is updated and all but the
// newest `keep` checkpoints (keep > 0) removed. Returns the checkpoint's path.
std::string write_checkpoint(const std::string& output, int64_t step, int keep,
                             const std::function<void(const std::string& dir)>& fill);
// The newest checkpoint of OUTPUT (from OUTPUT/last, else the highest checkpoint-N), "" if none.
std::string latest_checkpoint(const std::string& output);

// Hard-links (or copies, across file systems) a file or folder tree to `to`.
void link_or_copy(const std::string& from, const std::string& to);

}  // namespace diffuse::train
