// diffuse train unet|vae|clip: training on a folder of captioned images.
#include "apps/cli/cmd_train.h"

#include <cstdio>
#include <filesystem>

#include "apps/cli/command.h"
#include "apps/cli/common.h"
#include "core/parallel.h"
#include "io/mmap_file.h"
#include "io/safetensors.h"

namespace diffuse::cli {

namespace fs = std::filesystem;

void add_train_options(CLI::App& sub, TrainArgs& a) {
  sub.add_option("--data", a.data,
                 "Training images: a folder of PNG/JPEG files, each with a same-name .txt "
                 "caption, or with a metadata.jsonl of {\"file_name\", \"text\"} lines")
      ->required();
  sub.add_option("-o,--output", a.output, "Output folder: checkpoint-STEP/ folders, last, log.csv")
      ->required();
  sub.add_option("--resolution", a.resolution,
                 "Training size in pixels: images are resized (shorter side) and center-cropped "
                 "to a square of this size (default: the model's: its UNet's sample size, 256 "
                 "for a VAE, the image size of a CLIP vision tower)");
  sub.add_option("-b,--batch-size", a.batch_size, "Images per micro-batch (all processes together)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub.add_option("--grad-accum", a.grad_accum, "Micro-batches per optimizer step")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub.add_option("--steps", a.steps, "Optimizer steps to train (or --epochs)")
      ->check(CLI::Range(1, 100000000));
  sub.add_option("--epochs", a.epochs, "Passes over the data (when --steps is not given)")
      ->check(CLI::Range(1, 1000000));
  sub.add_option("--lr", a.lr, "Peak learning rate (AdamW)")->capture_default_str();
  sub.add_option("--weight-decay", a.weight_decay, "AdamW weight decay")->capture_default_str();
  sub.add_option("--lr-scheduler", a.lr_scheduler,
                 "Learning-rate schedule: constant, constant_with_warmup, linear or cosine")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "constant_with_warmup", "linear", "cosine"}));
  sub.add_option("--warmup-steps", a.warmup_steps, "Linear warm-up steps of the schedule")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--max-grad-norm", a.max_grad_norm, "Clip the gradients' global norm (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub.add_option("-s,--seed", a.seed, "Seed of the data order, noise and initial weights")
      ->capture_default_str();
  sub.add_option("--save-every", a.save_every,
                 "Write a checkpoint every N steps (and at the end; 0: end only)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--keep", a.keep, "Checkpoints to keep (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--log", a.log,
                 "CSV log of step,epoch,loss,lr,grad_norm,seconds (default OUTPUT/log.csv)");
  sub.add_flag("--resume", a.resume,
               "Continue from OUTPUT's newest checkpoint (same settings; the loss curve continues "
               "as if never stopped)");
  sub.add_flag("--ema", a.ema,
               "Keep an exponential moving average of the weights; checkpoints hold it");
  sub.add_option("--ema-decay", a.ema_decay, "EMA decay")->capture_default_str();
  sub.add_flag("--bf16", a.bf16, "bf16 autocast of the forward pass (fp32 master weights)");
  add_threads_option(sub, a.threads);
  sub.add_flag("-q,--quiet", a.quiet, "No progress bar");
}

train::OptimizationOptions optimization_options(const TrainArgs& a, int64_t total_steps) {
  train::OptimizationOptions o;
  o.adamw.lr = a.lr;
  o.adamw.weight_decay = a.weight_decay;
  o.lr_schedule.kind = a.lr_scheduler;
  o.lr_schedule.warmup_steps = a.warmup_steps;
  o.lr_schedule.total_steps = total_steps;
  o.grad_accumulation = a.grad_accum;
  o.max_grad_norm = a.max_grad_norm;
  if (a.ema) {
    train::EmaOptions e;
    e.decay = a.ema_decay;
    o.ema = e;
  }
  o.comm = &train::world();
  return o;
}

train::RunOptions run_options(const TrainArgs& a, nlohmann::json settings) {
  train::RunOptions r;
  r.output = a.output;
  r.log_csv = a.log;
  r.batch_size = a.batch_size;
  r.grad_accumulation = a.grad_accum;
  r.steps = a.steps;
  r.epochs = a.epochs;
  r.seed = a.seed;
  r.save_every = a.save_every;
  r.keep = a.keep;
  r.resume = a.resume;
  r.progress = !a.quiet;
  // What decides the loss curve (the length of the run may change between resumes).
  settings["resolution"] = a.resolution;
  settings["batch_size"] = a.batch_size;
  settings["grad_accum"] = a.grad_accum;
  settings["seed"] = a.seed;
  settings["lr"] = a.lr;
  settings["weight_decay"] = a.weight_decay;
  settings["lr_scheduler"] = a.lr_scheduler;
  settings["warmup_steps"] = a.warmup_steps;
  settings["max_grad_norm"] = a.max_grad_norm;
  settings["ema"] = a.ema ? nlohmann::json(a.ema_decay) : nlohmann::json(nullptr);
  settings["bf16"] = a.bf16;
  r.settings = settings.dump();
  return r;
}

train::ImageCaptionDataset open_training_data(const TrainArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  DF_CHECK(a.steps > 0 || a.epochs > 0, "give the length of the training: --steps N or --epochs N");
  train::ImageCaptionDataset d = train::ImageCaptionDataset::open(a.data);
  train::Communicator& w = train::world();
  if (w.rank() == 0)
    std::fprintf(stderr,
                 "diffuse train: %lld images from %s, %lldpx, batch %lld x %lld accumulated%s\n",
                 (long long)d.size(), a.data.c_str(), (long long)a.resolution,
                 (long long)a.batch_size, (long long)a.grad_accum,
                 w.size() > 1 ? (", " + std::to_string(w.size()) + " processes").c_str() : "");
  return d;
}

int run_task(train::TrainTask& task, int64_t dataset_size, const train::RunOptions& ro) {
  const train::RunResult r = train::run_training(task, dataset_size, ro, train::world());
  if (train::world().rank() == 0 && !r.last_checkpoint.empty())
    std::printf("%s\n", r.last_checkpoint.c_str());
  return 0;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  io::AtomicWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

void write_component(const std::string& dir, const nlohmann::json& config,
                     const io::TensorMap& tensors, const std::string& weights_name,
                     std::optional<DType> dtype, const io::Metadata& metadata) {
  fs::create_directories(dir);
  write_text_atomic((fs::path(dir) / "config.json").string(), config.dump(2) + "\n");
  io::save_safetensors((fs::path(dir) / weights_name).string(), tensors, metadata, dtype);
}

io::TensorMap trained_weights(const std::vector<nn::Module::ParamRef>& params,
                              const train::Optimization& optim) {
  io::TensorMap t;
  const train::Ema* ema = optim.ema();
  for (size_t i = 0; i < params.size(); ++i)
    t.emplace(params[i].name, ema ? ema->shadow()[i] : *params[i].tensor);
  return t;
}

void with_trained_weights(const std::vector<nn::Module::ParamRef>& params,
                          const train::Optimization& optim, const std::function<void()>& fn) {
  const train::Ema* ema = optim.ema();
  if (!ema) return fn();
  const std::vector<Tensor*> slots = train::slots(params);
  std::vector<Tensor> kept;
  for (Tensor* p : slots) kept.push_back(p->clone());
  ema->copy_to(slots);
  struct Restore {
    const std::vector<Tensor*>& slots;
    const std::vector<Tensor>& kept;
    ~Restore() {
      for (size_t i = 0; i < kept.size(); ++i) slots[i]->copy_from(kept[i]);
    }
  } restore{slots, kept};
  fn();
}

namespace {

Command train_cmd(
    "train", "Train a UNet, LoRA, VAE or CLIP model on a folder of captioned images",
    [](CLI::App& sub) -> std::function<int()> {
      sub.require_subcommand(1);
      auto actions = std::make_shared<std::vector<std::pair<CLI::App*, std::function<int()>>>>();
      auto add = [&](const char* name, const char* help,
                     void (*setup)(CLI::App&, std::function<int()>&)) {
        CLI::App* s = sub.add_subcommand(name, help);
        actions->emplace_back(s, nullptr);
        setup(*s, actions->back().second);
      };
      add("unet",
          "Fine-tune (or train from a config) a Stable Diffusion UNet; VAE and text encoder frozen",
          setup_train_unet);
      add("lora", "Train a LoRA (kohya format) on a Stable Diffusion UNet's attention layers",
          setup_train_lora);
      add("vae", "Train the VAE (reconstruction + KL)", setup_train_vae);
      add("clip",
          "Train a CLIP model (text and vision towers) contrastively on image-caption pairs",
          setup_train_clip);
      sub.footer(
          "Data: a folder of images with captions, either photo.png + photo.txt, or a\n"
          "metadata.jsonl with lines {\"file_name\": \"photo.png\", \"text\": \"a caption\"}.\n"
          "Each run writes OUTPUT/checkpoint-STEP/ (every --save-every steps and at the end),\n"
          "OUTPUT/last naming the newest, and OUTPUT/log.csv. Run with mpirun -np N for data\n"
          "parallelism (the batch is split over the processes). See `diffuse train unet --help`.");
      return [actions]() {
        for (auto& [s, run] : *actions)
          if (s->parsed()) return run();
        return 1;
      };
    });

}  // namespace
}  // namespace diffuse::cli
