// diffuse train vae: the autoencoder learns to reconstruct the images (mean squared error of
// the decoded posterior sample) with a small KL pull of the posterior towards N(0, I).
#include <cstdio>
#include <filesystem>

#include "apps/cli/cmd_train.h"
#include "apps/cli/common.h"
#include "autograd/autograd.h"
#include "io/mmap_file.h"
#include "io/safetensors.h"
#include "ops/ops.h"
#include "sampling/rng.h"
#include "train/init.h"
#include "train/latent_scale.h"
#include "train/losses.h"

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;

struct VaeArgs {
  TrainArgs t;
  std::string model, config;
  float kl_weight = 1e-6f;
  float scaling_factor = 0;  // 0: measured on the data
  int64_t scaling_images = 512;
};

// A VAE's config.json and weights: a VAE folder (config.json +
// diffusion_pytorch_model.safetensors), or any Stable Diffusion model (its VAE).
void load_vae_source(const std::string& path, nlohmann::json& config, io::TensorMap& weights) {
  const fs::path p(path);
  if (fs::is_regular_file(p / "config.json") && !fs::exists(p / "model_index.json")) {
    config = read_json_file((p / "config.json").string());
    weights = io::load_safetensors((p / "diffusion_pytorch_model.safetensors").string());
    return;
  }
  io::ModelFiles f = io::open_model(path);
  DF_CHECK(f.vae_config.is_object(), path,
           ": training its VAE needs a diffusers folder (vae/config.json)");
  config = f.vae_config;
  weights = f.vae;
}

class VaeTask final : public train::TrainTask {
 public:
  VaeTask(const VaeArgs& a, const train::ImageCaptionDataset& data, int64_t total_steps)
      : a_(a), data_(data) {
    io::TensorMap w;
    if (!a.config.empty()) {
      config_ = read_json_file(
          fs::is_directory(a.config) ? (fs::path(a.config) / "config.json").string() : a.config);
    } else {
      load_vae_source(a.model, config_, w);
    }
    vae_ = std::make_unique<models::AutoencoderKL>(models::VaeConfig::from_json(config_));
    if (a.config.empty())
      vae_->load_state_dict(w, "VAE of " + a.model);
    else
      train::init_parameters(*vae_, a.t.seed);
    DF_CHECK(a.t.resolution % vae_->scale_factor() == 0, "--resolution ", a.t.resolution,
             " is not a multiple of the VAE's downscale factor ", vae_->scale_factor());
    params_ = train::make_trainable(*vae_);
    optim_ = std::make_unique<train::Optimization>(train::slots(params_),
                                                   optimization_options(a.t, total_steps));
  }

  train::TrainStepResult micro_batch(const train::MicroBatch& b) override {
    std::vector<Tensor> images, noise;
    const int64_t lat = a_.t.resolution / vae_->scale_factor();
    for (size_t i = 0; i < b.indices.size(); ++i) {
      images.push_back(
          data_.image(b.indices[i], a_.t.resolution).unsqueeze(0));  // c h w -> 1 c h w
      sampling::TorchCpuGenerator g(b.seeds[i]);
      noise.push_back(g.randn({1, vae_->config().latent_channels, lat, lat}));
    }
    Tensor loss;
    {
      autograd::AutocastGuard cast(a_.t.bf16);
      loss = train::vae_loss(*vae_, ops::cat(images, 0), ops::cat(noise, 0), a_.kl_weight).loss;
    }
    return optim_->backward_and_step(loss);
  }

  train::Optimization& optimization() override { return *optim_; }
  const std::vector<nn::Module::ParamRef>& params() const override { return params_; }

  void save_model(const std::string& dir) override {
    const io::TensorMap w = trained_weights(params_, *optim_);
    nlohmann::json config = config_;
    config["scaling_factor"] = a_.scaling_factor > 0 ? a_.scaling_factor : measure_scaling_factor();
    write_component((fs::path(dir) / "vae").string(), config, w,
                    "diffusion_pytorch_model.safetensors");
    io::save_safetensors((fs::path(dir) / "vae.safetensors").string(), w);
  }

 private:
  // latent_scaling_factor of the weights saved (the EMA's when kept: swapped in meanwhile).
  float measure_scaling_factor() {
    float f = 0;
    with_trained_weights(params_, *optim_, [&] {
      f = train::latent_scaling_factor(*vae_, data_, a_.t.resolution, a_.scaling_images);
    });
    return f;
  }

  const VaeArgs& a_;
  const train::ImageCaptionDataset& data_;
  nlohmann::json config_;
  std::unique_ptr<models::AutoencoderKL> vae_;
  std::vector<nn::Module::ParamRef> params_;
  std::unique_ptr<train::Optimization> optim_;
};

int run_train_vae(VaeArgs& a) {
  DF_CHECK(a.model.empty() != a.config.empty(),
           "give either -m (a VAE or model to fine-tune) or --config (a VAE config.json to train "
           "from scratch)");
  if (a.t.resolution <= 0) a.t.resolution = 256;
  const train::ImageCaptionDataset data = open_training_data(a.t);
  nlohmann::json s;
  s["model"] = "vae";
  s["from_config"] = !a.config.empty();
  s["kl_weight"] = a.kl_weight;
  const train::RunOptions ro = run_options(a.t, s);
  VaeTask task(a, data, train::total_steps(ro, data.size()));
  return run_task(task, data.size(), ro);
}

}  // namespace

void setup_train_vae(CLI::App& sub, std::function<int()>& action) {
  auto a = std::make_shared<VaeArgs>();
  sub.add_option("-m,--model", a->model,
                 "The VAE to fine-tune: a VAE folder (config.json + "
                 "diffusion_pytorch_model.safetensors) or a diffusers model folder (its vae/)");
  sub.add_option("--config", a->config,
                 "Train a new VAE from scratch: a diffusers AutoencoderKL config.json");
  add_train_options(sub, a->t);
  sub.add_option("--kl-weight", a->kl_weight, "Weight of the KL term")->capture_default_str();
  sub.add_option("--scaling-factor", a->scaling_factor,
                 "The scaling_factor written into the checkpoints' vae/config.json (default: "
                 "measured at each checkpoint, 1 / std of the posterior means of the first "
                 "--scaling-images training images)")
      ->check(CLI::PositiveNumber);
  sub.add_option("--scaling-images", a->scaling_images,
                 "Training images (in the data's order) the scaling factor is measured on")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  sub.footer(
      "Example:\n"
      "  diffuse train vae -m sd15-diffusers --data photos/ -o vae-out --resolution 256 \\\n"
      "      --batch-size 4 --lr 1e-5 --steps 5000 --ema\n"
      "Each checkpoint-STEP/ holds vae/ (a diffusers VAE folder), vae.safetensors and the\n"
      "training state (vae.safetensors: the same tensors, diffusers names). The default\n"
      "resolution is 256. vae/config.json's scaling_factor (what a UNet trained on this VAE\n"
      "scales its latents by) is measured on the training images unless given.");
  action = [a]() { return run_train_vae(*a); };
}

}  // namespace diffuse::cli
