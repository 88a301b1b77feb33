// diffuse train unet: text-to-image training of a Stable Diffusion UNet (diffusers'
// train_text_to_image.py): images through the frozen VAE, captions through the frozen text
// encoder, the UNet learns to predict the noise (or v) at random timesteps.
#include <cstdio>
#include <filesystem>

#include "apps/cli/cmd_train.h"
#include "apps/cli/common.h"
#include "autograd/autograd.h"
#include "io/mmap_file.h"
#include "io/model_writer.h"
#include "ops/ops.h"
#include "pipeline/model_export.h"
#include "sampling/rng.h"
#include "train/init.h"
#include "train/lora.h"
#include "train/unet_trainer.h"

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;

struct UNetArgs {
  TrainArgs t;
  std::string model, config, model_config;
  // A model from parts (no -m, or an -m without unet/): train_unet --vae, --text-encoder...
  std::string vae, text_encoder, tokenizer, scheduler_config;
  std::string save_dtype;  // "": each tensor's own (trained: f32)
  std::string prediction_type;
  float min_snr_gamma = 0, noise_offset = 0;
  float caption_dropout = 0;  // share of captions replaced by "" (classifier-free guidance)
  bool gradient_checkpointing = false, cache_latents = false, cache_text = false;
  int64_t clip_skip = 0;
  // diffuse train lora: adapters on the attention projections, the UNet frozen.
  bool lora = false;
  train::LoraOptions lora_options;
};

// --config: a UNet config.json, or a folder holding one (directly or in unet/).
nlohmann::json read_unet_config(const std::string& p) {
  if (fs::is_regular_file(p)) return read_json_file(p);
  for (const char* rel : {"config.json", "unet/config.json"})
    if (fs::is_regular_file(fs::path(p) / rel)) return read_json_file((fs::path(p) / rel).string());
  DF_FAIL("--config ", p,
          ": no UNet config.json there (expected a file, DIR/config.json or DIR/unet/config.json)");
}

class UNetTask final : public train::TrainTask {
 public:
  UNetTask(const UNetArgs& a, pipeline::ModelBundle& model, const train::ImageCaptionDataset& data,
           int64_t total_steps)
      : a_(a), model_(model), data_(data) {
    nlohmann::json cfg = model.files.unet_config;
    if (!a.config.empty()) {
      cfg = read_unet_config(a.config);
      unet_ = std::make_unique<models::UNet2DConditionModel>(models::UNetConfig::from_json(cfg));
      train::init_parameters(*unet_, a.t.seed);
    } else {
      unet_ = std::make_unique<models::UNet2DConditionModel>(model.unet_config);
      unet_->load_state_dict(model.files.unet, "UNet of " + a.model);
    }
    // The pipeline as a diffusers folder writes it: the frozen parts as they are, the UNet's
    // config, the scheduler with the prediction type trained.
    files_ = pipeline::files_for_export(model, a.model_config);
    if (!cfg.is_null()) files_.unet_config = cfg;
    if (files_.scheduler_config.is_object())
      files_.scheduler_config["prediction_type"] = prediction_type();
    train::UNetTrainOptions o;
    static_cast<train::OptimizationOptions&>(o) = optimization_options(a.t, total_steps);
    o.min_snr_gamma = a.min_snr_gamma;
    o.prediction = sampling::parse_prediction_type(prediction_type());
    o.bf16 = a.t.bf16;
    o.gradient_checkpointing = a.gradient_checkpointing;
    o.seed = a.t.seed;
    train::NoiseSchedule schedule = train::NoiseSchedule::stable_diffusion();
    if (model.scheduler_config.is_object())
      schedule = train::NoiseSchedule::from_config(
          sampling::parse_scheduler_config(model.scheduler_config.dump()));
    num_timesteps_ = schedule.num_train_timesteps();
    if (a.lora) {
      train::LoraOptions lo = a.lora_options;
      lo.seed = a.t.seed;
      lora_ = train::LoraNetwork::inject(*unet_, lo);
      trainer_ =
          std::make_unique<train::UNetTrainer>(*unet_, std::move(schedule), o, lora_->params());
    } else {
      trainer_ = std::make_unique<train::UNetTrainer>(*unet_, std::move(schedule), o);
    }
    latents_.resize(size_t(data.size()));
    text_.resize(size_t(data.size()));
  }

  std::string prediction_type() const {
    return a_.prediction_type.empty() ? model_.prediction_type : a_.prediction_type;
  }

  train::TrainStepResult micro_batch(const train::MicroBatch& b) override {
    std::vector<Tensor> x0, ctx, noise;
    std::vector<int64_t> t;
    for (size_t i = 0; i < b.indices.size(); ++i) {
      autograd::NoGradGuard no_grad;
      const models::LatentDistribution& d = latents(b.indices[i]);
      // The sample's draws, in a fixed order: posterior noise, noise, timestep, offset, caption
      // dropout (the last two only when used).
      sampling::TorchCpuGenerator g(b.seeds[i]);
      const Tensor post = g.randn(d.mean.shape());
      Tensor n = g.randn(d.mean.shape());
      t.push_back(int64_t(g.next_u32() % uint32_t(num_timesteps_)));
      if (a_.noise_offset != 0)
        n = train::offset_noise(n, g.randn({1, d.mean.size(1), 1, 1}), a_.noise_offset);
      // diffusers' proportion_empty_prompts: the caption is dropped when u < p, u uniform in
      // [0, 1) from 24 bits.
      const bool drop =
          a_.caption_dropout > 0 && float(g.next_u32() >> 8) * 0x1p-24f < a_.caption_dropout;
      x0.push_back(ops::scale(d.sample(post), model_.vae_config.scaling_factor));
      noise.push_back(n);
      ctx.push_back(drop ? empty_text() : text(b.indices[i]));
    }
    return trainer_->step(ops::cat(x0, 0), ops::cat(ctx, 0), ops::cat(noise, 0), t);
  }

  train::Optimization& optimization() override { return trainer_->optimization(); }
  const std::vector<nn::Module::ParamRef>& params() const override { return trainer_->params(); }

  void save_model(const std::string& dir) override {
    if (lora_) return save_lora((fs::path(dir) / "lora.safetensors").string());
    io::ModelFiles f = files_;
    f.unet = trained_weights(trainer_->params(), trainer_->optimization());
    io::SaveOptions so;
    if (!a_.save_dtype.empty()) so.dtype = io::parse_save_dtype(a_.save_dtype);
    io::save_model(f, dir, io::ModelLayout::DiffusersFolder, so);
    io::save_model(f, (fs::path(dir) / "model.safetensors").string(), io::ModelLayout::SingleFile,
                   so);
  }

 private:
  // The kohya file of the adapters (their EMA when kept: swapped in for the write).
  void save_lora(const std::string& path) {
    io::Metadata meta;
    if (prediction_type() == "v_prediction") meta["ss_v_parameterization"] = "True";
    with_trained_weights(trainer_->params(), trainer_->optimization(),
                         [&] { lora_->save_kohya(path, meta); });
  }

  // The VAE posterior of sample i (kept when --cache-latents).
  const models::LatentDistribution& latents(int64_t i) {
    auto& slot = latents_[size_t(i)];
    if (slot.mean.defined()) return slot;
    const Tensor img = data_.image(i, a_.t.resolution).unsqueeze(0);  // c h w -> 1 c h w
    models::LatentDistribution d = model_.vae().encode(img);
    if (!a_.cache_latents) {
      scratch_ = d;
      return scratch_;
    }
    slot = d;
    return slot;
  }

  // The text encoder's output for sample i's caption [1, 77, D] (kept when --cache-text).
  Tensor text(int64_t i) {
    Tensor& slot = text_[size_t(i)];
    if (slot.defined()) return slot;
    Tensor e = model_.encode_prompt(data_[i].caption, clip_skip());
    if (a_.cache_text) slot = e;
    return e;
  }

  // The empty caption's encoding (a dropped caption's), computed once.
  const Tensor& empty_text() {
    if (!empty_text_.defined()) empty_text_ = model_.encode_prompt("", clip_skip());
    return empty_text_;
  }

  int64_t clip_skip() const { return a_.clip_skip > 0 ? a_.clip_skip : model_.default_clip_skip(); }

  const UNetArgs& a_;
  pipeline::ModelBundle& model_;
  const train::ImageCaptionDataset& data_;
  std::unique_ptr<models::UNet2DConditionModel> unet_;
  io::ModelFiles files_;
  std::unique_ptr<train::LoraNetwork> lora_;
  std::unique_ptr<train::UNetTrainer> trainer_;
  int64_t num_timesteps_ = 1000;
  std::vector<models::LatentDistribution> latents_;
  models::LatentDistribution scratch_;
  std::vector<Tensor> text_;
  Tensor empty_text_;
};

// -m, or the pipeline assembled from parts: --vae, --text-encoder, --tokenizer,
// --scheduler-config, each defaulting to the folder of an -m that has no unet/.
std::unique_ptr<pipeline::ModelBundle> open_training_model(const UNetArgs& a) {
  const bool base = !a.lora && !a.model.empty() && fs::is_directory(a.model) &&
                    !fs::exists(fs::path(a.model) / "unet");
  const bool parts = !a.vae.empty() || !a.text_encoder.empty() || !a.tokenizer.empty() ||
                     !a.scheduler_config.empty();
  if (!base && !parts) {
    DF_CHECK(!a.model.empty(),
             "give the model: -m MODEL, or --config with --vae and "
             "--text-encoder (a UNet trained from scratch on separate parts)");
    return open_model(a.model, a.model_config);
  }
  DF_CHECK(!a.config.empty(), base ? a.model + " has no unet/: " : "",
           "a UNet trained on separate parts is new: give its --config");
  DF_CHECK(a.model.empty() || base,
           "--vae, --text-encoder, --tokenizer and --scheduler-config "
           "assemble a model from parts: give them without -m, or with an -m that has no unet/ "
           "(",
           a.model, " has one)");
  auto from_base = [&](const std::string& given, const char* rel) {
    if (!given.empty() || !base) return given;
    const fs::path p = fs::path(a.model) / rel;
    return fs::exists(p) ? p.string() : std::string();
  };
  pipeline::ModelParts p;
  p.unet_config = read_unet_config(a.config);
  p.vae = from_base(a.vae, "vae");
  p.text_encoder = from_base(a.text_encoder, "text_encoder");
  p.tokenizer = from_base(a.tokenizer, "tokenizer");
  p.scheduler_config = from_base(a.scheduler_config, "scheduler/scheduler_config.json");
  DF_CHECK(!p.vae.empty(), "give the VAE: --vae DIR (a diffusers AutoencoderKL folder)");
  DF_CHECK(!p.text_encoder.empty(),
           "give the text encoder: --text-encoder DIR (a transformers CLIPTextModel folder)");
  pipeline::BundleOptions opt;
  opt.data_dir = data_dir();
  return pipeline::ModelBundle::from_parts(p, opt);
}

int run_train_unet(UNetArgs& a) {
  auto model = open_training_model(a);
  if (a.t.resolution <= 0) a.t.resolution = model->default_image_size();
  const int64_t multiple = model->vae().scale_factor()
                           << (model->unet_config.block_out_channels.size() - 1);
  DF_CHECK(a.t.resolution % multiple == 0, "--resolution ", a.t.resolution,
           " must be a multiple of ", multiple, " for this model (VAE and UNet downsampling)");
  const train::ImageCaptionDataset data = open_training_data(a.t);
  nlohmann::json s;
  s["model"] = a.lora ? "lora" : "unet";
  if (a.lora)
    s["lora"] = {a.lora_options.rank, a.lora_options.alpha, a.lora_options.projections,
                 a.lora_options.feed_forward};
  s["from_config"] = !a.config.empty();
  s["prediction_type"] = a.prediction_type;
  s["min_snr_gamma"] = a.min_snr_gamma;
  s["noise_offset"] = a.noise_offset;
  s["clip_skip"] = a.clip_skip;
  if (a.caption_dropout > 0) s["caption_dropout"] = a.caption_dropout;  // older runs resume
  const train::RunOptions ro = run_options(a.t, s);
  UNetTask task(a, *model, data, train::total_steps(ro, data.size()));
  return run_task(task, data.size(), ro);
}

}  // namespace

namespace {

// The options of `train unet` and `train lora`.
std::shared_ptr<UNetArgs> add_unet_options(CLI::App& sub, bool lora) {
  auto a = std::make_shared<UNetArgs>();
  a->lora = lora;
  CLI::Option* m = sub.add_option(
      "-m,--model", a->model,
      lora ? "The model the LoRA is trained on (a diffusers folder or a single "
             ".safetensors/.ckpt); all of it stays frozen"
           : "The model to fine-tune (a diffusers folder or a single "
             ".safetensors/.ckpt); its VAE and text encoder are frozen, encode the data "
             "and go into each checkpoint. With --config, a folder without unet/ gives "
             "the parts (vae/, text_encoder/, tokenizer/, scheduler/)");
  if (lora) m->required();
  sub.add_option("--model-config", a->model_config,
                 "For a single-file -m whose head counts differ from the published models': a "
                 "diffusers folder of the same model (as generate's --config)");
  if (!lora) {
    sub.add_option("--config", a->config,
                   "Train a new UNet from scratch: a diffusers UNet config.json (or a folder "
                   "with one), used with -m's VAE and text encoder, or with --vae and "
                   "--text-encoder");
    sub.add_option("--vae", a->vae,
                   "With --config and no -m: the frozen VAE, a diffusers AutoencoderKL folder "
                   "(e.g. a `train vae` checkpoint's vae/)");
    sub.add_option("--text-encoder", a->text_encoder,
                   "With --config and no -m: the frozen text encoder, a transformers "
                   "CLIPTextModel folder (e.g. a `train clip` checkpoint's text_encoder/)");
    sub.add_option("--tokenizer", a->tokenizer,
                   "With --vae: a tokenizer folder (default: the published CLIP tokenizer)");
    sub.add_option("--scheduler-config", a->scheduler_config,
                   "With --vae: a diffusers scheduler_config.json (default: Stable Diffusion's "
                   "published scheduler)");
  }
  add_train_options(sub, a->t);
  sub.add_option("--prediction-type", a->prediction_type,
                 "What the UNet learns to predict: epsilon, v_prediction or sample (default: the "
                 "model's scheduler config)")
      ->check(CLI::IsMember({"epsilon", "v_prediction", "sample"}));
  sub.add_option("--min-snr-gamma", a->min_snr_gamma, "Min-SNR loss weighting (5 is usual; 0: off)")
      ->capture_default_str();
  sub.add_option("--noise-offset", a->noise_offset, "Offset noise (e.g. 0.05; 0: off)")
      ->capture_default_str();
  sub.add_option("--caption-dropout", a->caption_dropout,
                 "Share of captions replaced by the empty caption (each sample's own draw), "
                 "which classifier-free guidance (--cfg-scale) needs in a model trained from "
                 "scratch; e.g. 0.1 (diffusers' proportion_empty_prompts)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub.add_option("--clip-skip", a->clip_skip,
                 "Text encoder layer from the end (default: the model's)");
  sub.add_flag("--gradient-checkpointing", a->gradient_checkpointing,
               "Recompute activations in the backward pass (less memory, ~30% slower)");
  sub.add_flag("--cache-latents", a->cache_latents,
               "Encode each image with the VAE once and keep its latents in memory");
  sub.add_flag("--cache-text-embeddings", a->cache_text,
               "Encode each caption once and keep the embedding in memory");
  if (!lora)
    sub.add_option("--save-dtype", a->save_dtype,
                   "dtype of the checkpoints' model files: f16, bf16 or f32 (default: as "
                   "trained, f32; the training state is always f32)")
        ->check(CLI::IsMember({"f16", "fp16", "bf16", "f32", "fp32"}));
  if (lora) {
    sub.add_option("--rank", a->lora_options.rank, "LoRA rank (network_dim)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1024));
    sub.add_option("--alpha", a->lora_options.alpha,
                   "LoRA alpha (network_alpha); the adapters' scale is alpha / rank")
        ->capture_default_str();
    sub.add_flag("--lora-projections", a->lora_options.projections,
                 "Also adapt each transformer's proj_in and proj_out");
    sub.add_flag("--lora-feed-forward", a->lora_options.feed_forward,
                 "Also adapt each transformer's feed-forward layers");
  }
  return a;
}

}  // namespace

void setup_train_unet(CLI::App& sub, std::function<int()>& action) {
  auto a = add_unet_options(sub, false);
  sub.footer(
      "Examples:\n"
      "  diffuse train unet -m sd15-diffusers --data photos/ -o out --resolution 512 \\\n"
      "      --batch-size 4 --grad-accum 4 --lr 1e-5 --steps 2000 --save-every 500 --ema\n"
      "  (after a stop: the same command with --resume continues from the newest checkpoint)\n"
      "  diffuse generate -m out/checkpoint-2000 -p \"a caption\"\n"
      "  diffuse train unet --config unet-config.json --vae vae-out/checkpoint-800/vae \\\n"
      "      --text-encoder clip-out/checkpoint-900/text_encoder --data photos/ -o out ...\n"
      "Each checkpoint-STEP/ is a complete diffusers pipeline folder (the trained UNet, the\n"
      "frozen VAE, text encoder, tokenizer and scheduler), the same model as one LDM-layout\n"
      "model.safetensors (for AUTOMATIC1111, ComfyUI...), and training_state.safetensors.\n"
      "With --ema both hold the averaged weights.");
  action = [a]() { return run_train_unet(*a); };
}

void setup_train_lora(CLI::App& sub, std::function<int()>& action) {
  auto a = add_unet_options(sub, true);
  sub.footer(
      "Example:\n"
      "  diffuse train lora -m v1-5-pruned-emaonly.safetensors --data photos/ -o lora-out \\\n"
      "      --resolution 512 --rank 8 --alpha 4 --lr 1e-4 --steps 1500 --save-every 500\n"
      "  diffuse generate -m v1-5-pruned-emaonly.safetensors --lora \\\n"
      "      lora-out/checkpoint-1500/lora.safetensors:0.8 -p \"a caption\"\n"
      "Only the adapters on the UNet's attention projections (to_q, to_k, to_v, to_out) train.\n"
      "Each checkpoint-STEP/ holds lora.safetensors (kohya's format, f16, as sd-scripts and\n"
      "AUTOMATIC1111 read it) and training_state.safetensors.");
  action = [a]() { return run_train_unet(*a); };
}

}  // namespace diffuse::cli
