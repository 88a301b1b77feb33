// Image generation: txt2img, img2img and inpainting over a ModelBundle, reproducing diffusers'
// StableDiffusion{,Img2Img,Inpaint}Pipeline step for step (same seed, same latents).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/image.h"
#include "pipeline/hires.h"
#include "pipeline/model_bundle.h"
#include "pipeline/parameters.h"

namespace diffuse::pipeline {

struct GenerateRequest {
  std::string prompt, negative_prompt;
  int64_t width = 512, height = 512;  // pixels, multiples of 8
  int steps = 20;
  float cfg_scale = 7.5f;       // classifier-free guidance; <= 1 runs the prompt alone
  std::string sampler = "euler_a";
  std::string scheduler = "default";  // default | karras | trailing
  int64_t seed = 0;             // image i of the run uses seed + i
  std::string rng = "cpu";      // cpu: torch's CPU generator (diffusers); cuda: Philox (A1111)
  int batch_size = 1;           // images per UNet call
  int batch_count = 1;          // batches, one after another
  int64_t clip_skip = 0;        // 0 = the family's default
  float eta = 0.0f;             // DDIM / TCD noise
  // SDXL's micro-conditioning (original size, crop, target size, the refiner's aesthetic
  // scores); ignored by families without time ids.
  SizeConditioning size_conditioning;
  // Decode images larger than the VAE's sample_size in overlapping tiles (diffusers'
  // enable_vae_tiling): the decoder's memory stays one tile's at any size.
  bool vae_tiling = false;

  // img2img: an image [1, 3, H, W] in [-1, 1] (H, W = height, width) and the strength.
  Tensor init_image;
  double strength = 0.75;
  // img2img from latents already in the UNet's space, [1, C, h, w], instead of an image (a
  // base model's output handed to the SDXL refiner): nothing is encoded, only the noise drawn.
  Tensor init_image_latents;
  // A run split between two models (diffusers' denoising_end / denoising_start): see
  // sampling::SamplerOptions. generate() sets them itself when given a refiner.
  double denoising_end = 1.0, denoising_start = 0.0;
  // With a refiner model: the fraction of the steps the base model runs before it hands its
  // (still noisy) latents to the refiner (A1111's refiner_switch_at).
  double refiner_switch_at = 0.8;
  // Inpainting: [1, 1, H, W] in [0, 1], 1 = repaint. Needs init_image. A 9-channel inpaint
  // model repaints from noise; an ordinary model does masked img2img.
  Tensor mask;
  // Exact reproduction: the initial latents [batch_size * batch_count, C, h, w] (unscaled
  // noise, as diffusers' `latents=` argument) instead of drawing them.
  Tensor init_latents;

  // LoRA files (kohya format) to merge for this request. The prompt's <lora:NAME:WEIGHT> tags
  // (AUTOMATIC1111's syntax, positive prompt only) add NAME.safetensors from lora_dir (or a
  // folder below it); the tags are taken out of the text the encoder sees.
  std::vector<models::LoraUse> loras;
  std::string lora_dir;

  // txt2img's hires fix (pipeline/hires.h): a second, img2img pass at a larger size.
  HiresOptions hires;
};

struct GenerateResult {
  std::vector<io::Image> images;
  std::vector<int64_t> seeds;
  Tensor latents;  // final latents of every image, before the VAE (unscaled: as the UNet sees)
};

// Called after each sampler step: (images done so far, step within the batch, steps per batch).
// Return false to cancel: generate() then throws diffuse::Error("cancelled").
using ProgressFn = std::function<bool(int batch, int step, int total_steps)>;

// Checks a request against a model: sizes, steps, strength, sampler, mask and image shapes;
// throws one clear Error naming the problem.
void validate_request(const ModelBundle& model, const GenerateRequest& req);

// The LoRA files of a request: `loras`, then the files its prompt's tags name. *prompt (if
// given) gets the prompt without the tags. Throws naming a malformed tag or a missing file.
std::vector<models::LoraUse> request_loras(const GenerateRequest& req,
                                           std::string* prompt = nullptr);
// The file a <lora:NAME> tag means: DIR/NAME.safetensors, else the one NAME.safetensors in a
// folder below DIR. NAME may not hold a path.
std::string find_lora_file(const std::string& lora_dir, const std::string& name);

// Model calls per batch: img2img runs only the last int(steps * strength) steps; the hires fix
// adds its second pass's. (An order-2 sampler calls the model about twice per step; progress
// counts the callbacks.)
int steps_per_batch(const ModelBundle& model, const GenerateRequest& req);
// The parameters an image of this request records (seed left for the caller per image).
ImageParameters image_parameters(const GenerateRequest& req, const std::string& model_name,
                                 int64_t clip_skip);

// The hires fix's second pass as a request of its own: its size, steps, strength, sampler and
// prompts, img2img from latents (init_image_latents left for the caller), one batch.
GenerateRequest hires_request(const ModelBundle& model, const GenerateRequest& req);

// Checks that `refiner` can finish `base`'s images for this request (same latent space, no
// inpainting, a switch in (0, 1)); throws one clear Error.
void validate_refiner(const ModelBundle& base, const ModelBundle& refiner, const GenerateRequest& req);

// With `refiner` (an SDXL refiner, or any model of the same latent space), the base model
// denoises until req.refiner_switch_at and the refiner finishes from its latents, conditioned by
// its own text encoder and time ids (the SDXL base + refiner pair as diffusers runs it with
// denoising_end / denoising_start); the refiner's VAE decodes.
GenerateResult generate(ModelBundle& model, const GenerateRequest& req,
                        const ProgressFn& progress = {}, ModelBundle* refiner = nullptr);

// The conditioning of a request's prompt (negative = false) or negative prompt, batch 1, with
// its time ids. An empty negative prompt is zeros where the model asks for it (SDXL base).
Conditioning request_conditioning(ModelBundle& model, const GenerateRequest& req,
                                  const std::string& prompt, int64_t clip_skip, bool negative);

// The lower level, for tests and tools: one batch's final latents, given the conditioning of
// each side, batch 1 (negative may be empty when cfg_scale <= 1). `on_step` sees each step's
// latents.
Tensor sample_latents(ModelBundle& model, const GenerateRequest& req, const Conditioning& cond,
                      const Conditioning& uncond, const Tensor& init_latents, int64_t first_seed,
                      const std::function<void(int, const Tensor&)>& on_step = {});

}  // namespace diffuse::pipeline
