// AUTOMATIC1111's "hires fix": the first pass's result upscaled (in latent space, or as an image
// through the VAE) and refined by an img2img pass at the larger size.
//
// The rule, as diffusers' img2img pipeline composes it (the reference this is checked against):
// pass 2 sets its scheduler to `steps` steps (0 = the first pass's count) and runs the last
// int(steps * strength) of them; its noise is the first draw of a fresh generator seeded with
// each image's own seed (after the VAE's posterior sample for an image-space upscaler), added at
// the first of those steps. SDXL's time ids are pass 2's own size. (A1111 itself runs `steps`
// steps of a longer schedule, int(steps / strength).)
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "pipeline/model_bundle.h"

namespace diffuse::pipeline {

struct HiresOptions {
  bool enabled = false;
  double scale = 2.0;             // the second pass's size, as a factor of the first's...
  int64_t width = 0, height = 0;  // ...or in pixels (both nonzero)
  std::string upscaler = "latent";
  int steps = 0;                  // 0: the first pass's step count
  double strength = 0.55;         // the second pass's denoising strength
  std::string sampler;            // "": the first pass's
  std::string prompt, negative_prompt;  // "": the first pass's
};

// The upscalers: diffuse's name, A1111's name, and whether it works on latents.
struct HiresUpscaler {
  const char* name;
  const char* a1111;
  bool latent;
};
const std::vector<HiresUpscaler>& hires_upscalers();
// The upscaler called `name` (diffuse's or A1111's); throws naming the known ones.
const HiresUpscaler& find_hires_upscaler(const std::string& name);

// The second pass's size for a first pass of width x height: the scale (or the given size)
// rounded down to a multiple of `multiple` pixels.
std::pair<int64_t, int64_t> hires_size(const HiresOptions& h, int64_t width, int64_t height,
                                       int64_t multiple);

// Latent upscalers: [B, C, h, w] latents (in the UNet's space) -> [B, C, height/f, width/f].
Tensor upscale_latents(const Tensor& latents, const HiresUpscaler& up, int64_t h, int64_t w);
// Image upscalers: [B, 3, H, W] images in [-1, 1] -> [B, 3, height, width], clamped.
Tensor upscale_image(const Tensor& images, const HiresUpscaler& up, int64_t height, int64_t width);

}  // namespace diffuse::pipeline
