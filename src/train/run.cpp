#include "train/run.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/progress.h"
#include "io/mmap_file.h"
#include "train/dataset.h"

namespace diffuse::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "training_state.safetensors";
constexpr const char* kCsvHeader = "step,epoch,loss,lr,grad_norm,seconds";

void write_file_atomic(const std::string& path, const std::string& text) {
  io::AtomicWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

// Starts the CSV log: a fresh file with its header, or on resume the existing rows up to and
// including `keep_until` (rows of steps after the checkpoint are dropped: they are run again).
void start_log(const std::string& path, bool resume, int64_t keep_until) {
  std::string text = std::string(kCsvHeader) + "\n";
  if (resume && fs::exists(path)) {
    std::istringstream in(io::read_text_file(path));
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      int64_t step = -1;
      try {
        step = std::stoll(line.substr(0, line.find(',')));
      } catch (const std::exception&) {
        continue;  // a half-written last line of a killed run
      }
      if (step <= keep_until && std::count(line.begin(), line.end(), ',') == 5) text += line + "\n";
    }
  }
  if (!fs::path(path).parent_path().empty()) fs::create_directories(fs::path(path).parent_path());
  write_file_atomic(path, text);
}

}  // namespace

int64_t total_steps(const RunOptions& o, int64_t dataset_size) {
  if (o.steps > 0) return o.steps;
  DF_CHECK(o.epochs > 0, "give the length of the training: --steps or --epochs");
  const int64_t per_step = o.batch_size * o.grad_accumulation;
  return (o.epochs * dataset_size + per_step - 1) / per_step;
}

RunResult run_training(TrainTask& task, int64_t n, const RunOptions& o, Communicator& comm) {
  DF_CHECK(n > 0, "training: the dataset is empty");
  DF_CHECK(o.batch_size > 0 && o.grad_accumulation > 0, "training: bad batch size ", o.batch_size,
           " or accumulation ", o.grad_accumulation);
  DF_CHECK(!o.output.empty(), "training: no output folder");
  const int64_t total = total_steps(o, n);
  const BatchShare share = batch_share(o.batch_size, comm.rank(), comm.size());
  const bool lead = comm.rank() == 0;
  const std::string log_path =
      o.log_csv.empty() ? (fs::path(o.output) / "log.csv").string() : o.log_csv;

  RunResult res;
  RunPosition pos;
  const std::string ckpt = latest_checkpoint(o.output);
  if (o.resume && !ckpt.empty()) {
    std::string saved;
    pos = load_training_state((fs::path(ckpt) / kStateFile).string(), task.params(),
                              task.optimization(), &saved);
    DF_CHECK(o.settings.empty() || saved == o.settings, "cannot resume from ", ckpt,
             ": it was trained with other settings.\n  saved:   ", saved,
             "\n  now:     ", o.settings,
             "\nuse the same settings, or another --output to start afresh");
    if (lead)
      std::fprintf(stderr, "resuming from %s (step %lld)\n", ckpt.c_str(), (long long)pos.step);
  } else {
    DF_CHECK(o.resume || ckpt.empty(), o.output, " already holds ", ckpt,
             "; pass --resume to continue that run, or choose another --output");
    if (o.resume && lead)
      std::fprintf(stderr, "no checkpoint in %s: starting a new run\n", o.output.c_str());
  }
  res.start_step = res.steps = pos.step;
  if (lead) {
    fs::create_directories(o.output);
    // Leftovers of a killed run: half-written checkpoint folders and `last` files.
    for (auto& e : fs::directory_iterator(o.output)) {
      const std::string f = e.path().filename().string();
      if ((f.rfind(".checkpoint-", 0) == 0 && f.size() > 4 && f.substr(f.size() - 4) == ".tmp") ||
          f.rfind("last.tmp", 0) == 0)
        fs::remove_all(e.path());
    }
    start_log(log_path, pos.step > 0, pos.step);
  }
  if (pos.step >= total) {
    if (lead)
      std::fprintf(stderr, "already trained %lld of %lld steps\n", (long long)pos.step,
                   (long long)total);
    res.last_checkpoint = ckpt;
    return res;
  }

  std::ofstream log;
  if (lead) {
    log.open(log_path, std::ios::app);
    DF_CHECK(log.good(), "cannot write the training log ", log_path);
  }
  SampleStream stream(n, o.seed);
  Progress bar("train", total - pos.step, o.progress && lead);
  const auto t0 = std::chrono::steady_clock::now();
  const double start_seconds = pos.seconds;
  for (int64_t step = pos.step; step < total; ++step) {
    double loss = 0;
    TrainStepResult last;
    for (int64_t k = 0; k < o.grad_accumulation; ++k) {
      MicroBatch mb;
      for (int64_t j = share.begin; j < share.end; ++j) {
        mb.indices.push_back(stream.at(pos.samples + j).index);
        mb.seeds.push_back(sample_seed(o.seed, step, k * o.batch_size + j));
      }
      pos.epoch = stream.at(pos.samples + o.batch_size - 1).epoch;
      pos.samples += o.batch_size;
      const TrainStepResult r = task.micro_batch(mb);
      loss += comm.mean(r.loss);
      if (r.stepped) last = r;
    }
    DF_CHECK(last.stepped, "training: the optimizer did not step after ", o.grad_accumulation,
             " micro-batches (accumulation mismatch)");
    loss /= double(o.grad_accumulation);
    pos.step = step + 1;
    res.steps = pos.step;
    res.last_loss = loss;
    if (lead) {
      const double secs =
          start_seconds +
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      pos.seconds = secs;
      char row[192];
      std::snprintf(row, sizeof row, "%lld,%lld,%.9g,%.9g,%.9g,%.3f\n", (long long)pos.step,
                    (long long)pos.epoch, loss, double(last.lr), last.grad_norm, secs);
      log << row << std::flush;
      char extra[96];
      std::snprintf(extra, sizeof extra, "step %lld/%lld epoch %lld loss %.4f lr %.3g",
                    (long long)pos.step, (long long)total, (long long)pos.epoch, loss,
                    double(last.lr));
      bar.update(pos.step - res.start_step, extra);
    }
    const bool save = pos.step == total || (o.save_every > 0 && pos.step % o.save_every == 0);
    if (save) {
      if (lead)
        res.last_checkpoint =
            write_checkpoint(o.output, pos.step, o.keep, [&](const std::string& dir) {
              task.save_model(dir);
              save_training_state((fs::path(dir) / kStateFile).string(), task.params(),
                                  task.optimization(), pos, o.settings);
            });
      comm.barrier();
    }
  }
  bar.finish();
  return res;
}

}  // namespace diffuse::train
