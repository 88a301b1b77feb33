// train_step_bench: the cost of one training step (forward, backward, AdamW) of models built
// from config files, on random data, for sizing a model trained from scratch (docs/emoji_model.md):
//
//   train_step_bench vae  VAE_CONFIG.json  --batch 16 --resolution 64
//   train_step_bench clip CLIP_CONFIG.json --batch 64
//   train_step_bench unet UNET_CONFIG.json --batch 32 --latent 16 --context 64
//
// Prints the parameter count, the f16 size, and the wall and CPU time per step (median of
// --steps after one warm-up step); CPU time is steadier than wall time on a shared machine.
// --profile adds the per-op table of the timed steps. On a machine shared with other work,
// --threads 1 avoids the thread pool's waits for a descheduled thread.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/error.h"
#include "core/parallel.h"
#include "models/clip/clip_vision_model.h"
#include "models/unet/unet_2d_condition.h"
#include "models/vae/autoencoder_kl.h"
#include "ops/profile.h"
#include "train/init.h"
#include "train/losses.h"
#include "train/optim.h"
#include "train/optimization.h"
#include "train/unet_trainer.h"

using namespace diffuse;

namespace {

struct Args {
  std::string model, config;
  int64_t batch = 16, resolution = 64, latent = 16, context = 0, steps = 5, threads = 0;
  bool bf16 = false, profile = false;
};

Tensor randn(const Shape& s, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(size_t(shape_numel(s)));
  for (float& x : v) x = d(rng);
  return Tensor::from_vector(v, s);
}

double cpu_seconds() {
  return double(std::clock()) / CLOCKS_PER_SEC;
}

void report(const char* what, int64_t params, std::vector<double> wall, std::vector<double> cpu,
            const Args& a) {
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  std::printf(
      "%-5s %-40s params %9lld  f16 %6.2f MB  batch %3lld  step: wall %.3f s, cpu %.3f s"
      "  (%.2f ms cpu per sample)%s\n",
      what, a.config.c_str(), (long long)params, params * 2 / 1e6, (long long)a.batch,
      wall[wall.size() / 2], cpu[cpu.size() / 2], 1e3 * cpu[cpu.size() / 2] / a.batch,
      a.bf16 ? "  bf16" : "");
}

template <typename Step>
void time_steps(const Args& a, Step step, std::vector<double>& wall, std::vector<double>& cpu) {
  for (int64_t i = 0; i <= a.steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    step();
    if (i == 0) {  // warm-up
      ops::set_profiling(a.profile);
      continue;
    }
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(cpu_seconds() - c0);
  }
}

int run(const Args& a) {
  std::ifstream in(a.config);
  DF_CHECK(in, "cannot read ", a.config);
  const auto j = nlohmann::json::parse(in);
  std::vector<double> wall, cpu;
  train::OptimizationOptions o;
  o.adamw.lr = 1e-4f;
  if (a.model == "vae") {
    models::AutoencoderKL vae(models::VaeConfig::from_json(j));
    train::init_parameters(vae, 1);
    train::Optimization opt(train::slots(train::make_trainable(vae)), o);
    const Tensor img = randn({a.batch, 3, a.resolution, a.resolution}, 2, 0.5f);
    const int64_t f = int64_t(1) << (vae.config().block_out_channels.size() - 1);
    const Tensor noise =
        randn({a.batch, vae.config().latent_channels, a.resolution / f, a.resolution / f}, 3);
    time_steps(
        a,
        [&] {
          Tensor loss;
          {
            autograd::AutocastGuard cast(a.bf16);
            loss = train::vae_loss(vae, img, noise, 1e-6f).loss;
          }
          opt.backward_and_step(loss);
        },
        wall, cpu);
    report("vae", vae.num_parameters(), wall, cpu, a);
  } else if (a.model == "clip") {
    models::ClipModel clip(models::ClipModelConfig::from_json(j));
    train::init_parameters(clip, 1);
    train::Optimization opt(train::slots(train::make_trainable(clip)), o);
    const auto& c = clip.config();
    std::vector<int64_t> ids(size_t(a.batch * c.text.max_position_embeddings), c.text.eos_token_id);
    std::mt19937 rng(4);
    for (int64_t b = 0; b < a.batch; ++b) {  // BOS, 8 random tokens, EOS padding
      ids[size_t(b * c.text.max_position_embeddings)] = c.text.bos_token_id;
      for (int64_t k = 1; k <= 8; ++k)
        ids[size_t(b * c.text.max_position_embeddings + k)] = int64_t(rng() % 40000);
    }
    const Tensor id_t = Tensor::from_i64(ids, {a.batch, c.text.max_position_embeddings});
    const Tensor px = randn({a.batch, 3, c.vision.image_size, c.vision.image_size}, 5, 0.5f);
    time_steps(
        a,
        [&] {
          Tensor loss;
          {
            autograd::AutocastGuard cast(a.bf16);
            loss = train::clip_contrastive_loss(clip.forward(id_t, px).logits_per_text);
          }
          opt.backward_and_step(loss);
        },
        wall, cpu);
    report("clip", clip.num_parameters(), wall, cpu, a);
  } else if (a.model == "unet") {
    const auto c = models::UNetConfig::from_json(j);
    models::UNet2DConditionModel unet(c);
    train::init_parameters(unet, 1);
    train::UNetTrainOptions uo;
    uo.adamw.lr = 1e-4f;
    uo.bf16 = a.bf16;
    train::UNetTrainer trainer(unet, train::NoiseSchedule::stable_diffusion(), uo);
    const Tensor x0 = randn({a.batch, c.in_channels, a.latent, a.latent}, 6);
    const Tensor ctx = randn({a.batch, 77, a.context > 0 ? a.context : c.cross_attention_dim}, 7);
    time_steps(
        a, [&] { trainer.step(x0, ctx); }, wall, cpu);
    report("unet", unet.num_parameters(), wall, cpu, a);
  } else {
    DF_FAIL("unknown model '", a.model, "': vae, clip or unet");
  }
  if (a.profile) std::printf("%s", ops::profile_table().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    DF_CHECK(args.size() >= 2,
             "usage: train_step_bench vae|clip|unet CONFIG.json [--batch N] "
             "[--resolution R] [--latent S] [--context D] [--steps N] [--threads N] [--bf16] "
             "[--profile]");
    a.model = args[0];
    a.config = args[1];
    for (size_t i = 2; i < args.size(); ++i) {
      const std::string& k = args[i];
      if (k == "--bf16" || k == "--profile") {
        (k == "--bf16" ? a.bf16 : a.profile) = true;
        continue;
      }
      DF_CHECK(i + 1 < args.size(), k, " needs a value");
      const int64_t v = std::stoll(args[++i]);
      const std::map<std::string, int64_t*> opts = {
          {"--batch", &a.batch},     {"--resolution", &a.resolution}, {"--latent", &a.latent},
          {"--context", &a.context}, {"--steps", &a.steps},           {"--threads", &a.threads}};
      auto it = opts.find(k);
      if (it != opts.end())
        *it->second = v;
      else
        DF_FAIL("unknown option ", k);
    }
    if (a.threads > 0) set_num_threads(int(a.threads));
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_step_bench: %s\n", e.what());
    return 1;
  }
}
