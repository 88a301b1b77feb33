#include "pipeline/generate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <tuple>

#include "core/finite.h"
#include "ops/ops.h"
#include "pipeline/batch_generator.h"
#include "pipeline/image_tensor.h"
#include "sampling/samplers.h"
#include "tokenizer/prompt_syntax.h"

namespace diffuse::pipeline {

namespace {

sampling::SamplerOptions sampler_options(const ModelBundle& model, const GenerateRequest& req) {
  sampling::SamplerOptions o;
  o.name = req.sampler;
  if (req.scheduler == "karras") o.scheduler = sampling::NoiseSchedule::Karras;
  else if (req.scheduler == "trailing") o.scheduler = sampling::NoiseSchedule::Trailing;
  else o.scheduler = sampling::NoiseSchedule::Default;
  o.steps = req.steps;
  o.eta = req.eta;
  o.strength = req.strength;
  o.denoising_end = req.denoising_end;
  o.denoising_start = req.denoising_start;
  o.config = model.scheduler_config.is_object()
                 ? sampling::parse_scheduler_config(model.scheduler_config.dump())
                 : sampling::SchedulerConfig::stable_diffusion();
  o.prediction_type = sampling::parse_prediction_type(model.prediction_type);
  return o;
}

// A sample of the VAE's posterior, scaled into the UNet's latent space (draws from gen).
Tensor encode_sample(ModelBundle& model, const Tensor& image, sampling::Generator& gen, int64_t batch) {
  auto d = model.vae().encode(image);  // one image for the batch, or one each
  const int64_t n = image.size(0) == batch ? 1 : batch;
  Tensor mean = repeat_batch(d.mean, n), logvar = repeat_batch(d.logvar, n);
  Tensor noise = gen.randn(mean.shape());
  Tensor stdev = ops::scale(logvar, 0.5f);
  float* p = stdev.data<float>();
  for (int64_t i = 0, n = stdev.numel(); i < n; ++i) p[i] = std::exp(p[i]);
  Tensor z = ops::add(mean, ops::mul(stdev, noise));
  return ops::scale(z, model.vae_config.scaling_factor);
}

// The mask at latent size (nearest, as torch's interpolate), [1, 1, h, w].
Tensor mask_to_latent_size(const Tensor& mask, int64_t h, int64_t w) {
  const int64_t H = mask.size(2), W = mask.size(3);
  Tensor m = mask.contiguous();
  Tensor out = Tensor::empty({1, 1, h, w});
  const float* src = m.data<float>();
  float* dst = out.data<float>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      dst[y * w + x] = src[(y * H / h) * W + (x * W / w)];
  return out;
}

Tensor binarize(const Tensor& mask) {
  Tensor m = mask.contiguous().clone();
  float* p = m.data<float>();
  for (int64_t i = 0, n = m.numel(); i < n; ++i) p[i] = p[i] >= 0.5f ? 1.0f : 0.0f;
  return m;
}

// The multiple of pixels a size must be for this model (the VAE's and the UNet's downsampling).
int64_t size_multiple(const ModelBundle& model) {
  return (int64_t(1) << (model.vae_config.block_out_channels.size() - 1)) *
         (int64_t(1) << (model.unet_config.block_out_channels.size() - 1));
}

int64_t vae_factor(const ModelBundle& model) {
  return int64_t(1) << (model.vae_config.block_out_channels.size() - 1);
}

// The LoRA tags of a prompt, as (name, weights) text: a hires prompt may repeat the prompt's.
std::vector<std::string> lora_tag_texts(const std::string& prompt) {
  std::vector<std::string> out;
  for (auto& t : tokenizer::parse_prompt_networks(prompt).loras)
    out.push_back(str(t.name, ":", t.text_encoder_weight, ":", t.unet_weight));
  std::sort(out.begin(), out.end());
  return out;
}

void validate_hires(const ModelBundle& model, const GenerateRequest& req) {
  DF_CHECK(!req.init_image.defined() && !req.init_image_latents.defined() && !req.mask.defined(),
           "the hires fix is a txt2img second pass: it does not take an init image or a mask");
  find_hires_upscaler(req.hires.upscaler);
  DF_CHECK(req.hires.strength > 0.0 && req.hires.strength <= 1.0,
           "the hires strength must be in (0, 1], got ", req.hires.strength);
  DF_CHECK(req.hires.steps >= 0 && req.hires.steps <= 1000,
           "hires steps must be between 0 (the first pass's) and 1000, got ", req.hires.steps);
  DF_CHECK(req.hires.prompt.empty() || lora_tag_texts(req.hires.prompt) == lora_tag_texts(req.prompt),
           "the hires prompt names other LoRAs than the prompt: the LoRAs of a run come from the "
           "prompt (a hires prompt may only repeat its <lora:...> tags)");
  GenerateRequest h = hires_request(model, req);
  const int64_t f = vae_factor(model);
  h.init_image_latents =
      Tensor::zeros({req.batch_size, model.vae_config.latent_channels, h.height / f, h.width / f});
  validate_request(model, h);
}

}  // namespace

GenerateRequest hires_request(const ModelBundle& model, const GenerateRequest& req) {
  GenerateRequest h = req;
  std::tie(h.width, h.height) = hires_size(req.hires, req.width, req.height, size_multiple(model));
  h.steps = req.hires.steps > 0 ? req.hires.steps : req.steps;
  h.strength = req.hires.strength;
  if (!req.hires.sampler.empty()) h.sampler = req.hires.sampler;
  if (!req.hires.prompt.empty()) h.prompt = req.hires.prompt;
  if (!req.hires.negative_prompt.empty()) h.negative_prompt = req.hires.negative_prompt;
  h.init_image = h.init_image_latents = h.mask = h.init_latents = Tensor();
  h.batch_count = 1;
  h.denoising_start = 0.0;
  h.denoising_end = 1.0;
  h.hires = HiresOptions();
  return h;
}

void validate_request(const ModelBundle& model, const GenerateRequest& req) {
  const int64_t f = int64_t(1) << (model.vae_config.block_out_channels.size() - 1);
  DF_CHECK(req.width > 0 && req.height > 0 && req.width % f == 0 && req.height % f == 0,
           "size ", req.width, "x", req.height, " is not a multiple of ", f);
  const int64_t lf = int64_t(1) << (model.unet_config.block_out_channels.size() - 1);
  DF_CHECK((req.width / f) % lf == 0 && (req.height / f) % lf == 0, "size ", req.width, "x",
           req.height, " must be a multiple of ", f * lf, " for this model");
  DF_CHECK(req.steps >= 1 && req.steps <= 1000, "steps must be between 1 and 1000, got ", req.steps);
  DF_CHECK(req.batch_size >= 1 && req.batch_count >= 1, "batch size and count must be at least 1");
  DF_CHECK(std::isfinite(req.cfg_scale), "cfg scale must be a number");
  DF_CHECK(req.rng == "cpu" || req.rng == "cuda", "unknown rng '", req.rng, "' (cpu or cuda)");
  bool known = false;
  for (auto& s : sampling::sampler_names()) known |= s == req.sampler;
  if (!known) {
    std::string all;
    for (auto& s : sampling::sampler_names()) all += (all.empty() ? "" : ", ") + s;
    DF_FAIL("unknown sampler '", req.sampler, "' (one of: ", all, ")");
  }
  DF_CHECK(req.scheduler == "default" || req.scheduler == "karras" || req.scheduler == "trailing",
           "unknown scheduler '", req.scheduler, "' (default, karras or trailing)");
  if (req.init_image.defined()) {
    DF_CHECK(req.strength > 0.0 && req.strength <= 1.0, "strength must be in (0, 1], got ",
             req.strength);
    DF_CHECK(req.init_image.dim() == 4 && req.init_image.size(1) == 3 &&
                 req.init_image.size(2) == req.height && req.init_image.size(3) == req.width,
             "the init image is ", req.init_image.size(-1), "x", req.init_image.size(-2),
             " but the requested size is ", req.width, "x", req.height);
  }
  if (req.init_image_latents.defined()) {
    DF_CHECK(!req.init_image.defined(), "give an init image or init image latents, not both");
    DF_CHECK(req.strength > 0.0 && req.strength <= 1.0, "strength must be in (0, 1], got ",
             req.strength);
    Shape want = {1, model.vae_config.latent_channels, req.height / f, req.width / f};
    if (req.init_image_latents.dim() == 4 && req.init_image_latents.size(0) == req.batch_size)
      want[0] = req.batch_size;
    DF_CHECK(req.init_image_latents.shape() == want, "init image latents are ",
             req.init_image_latents.desc(), " but this run needs f32", shape_str(want));
  }
  if (req.mask.defined()) {
    DF_CHECK(req.init_image.defined(), "a mask needs an init image");
    DF_CHECK(req.mask.dim() == 4 && req.mask.size(2) == req.init_image.size(2) &&
                 req.mask.size(3) == req.init_image.size(3),
             "the mask is ", req.mask.size(-1), "x", req.mask.size(-2), " but the image is ",
             req.init_image.size(-1), "x", req.init_image.size(-2));
  }
  DF_CHECK(!model.inpaint || req.mask.defined(), "this is an inpainting model: give an image and a mask");
  if (req.init_latents.defined()) {
    const int64_t n = int64_t(req.batch_size) * req.batch_count;
    const Shape want = {n, model.vae_config.latent_channels, req.height / f, req.width / f};
    DF_CHECK(req.init_latents.shape() == want, "init latents are ", req.init_latents.desc(),
             " but this run needs f32", shape_str(want));
  }
  if (req.clip_skip > 0) model.check_clip_skip(req.clip_skip);
  if (req.hires.enabled) validate_hires(model, req);
  for (auto& l : request_loras(req))
    DF_CHECK(std::filesystem::is_regular_file(l.path), "LoRA file ", l.path, " not found");
}

std::string find_lora_file(const std::string& lora_dir, const std::string& name) {
  namespace fs = std::filesystem;
  DF_CHECK(name.find_first_of("/\\") == std::string::npos && name != "." && name != "..",
           "LoRA name '", name, "' must be a file name without folders");
  DF_CHECK(!lora_dir.empty(), "the prompt names LoRA '", name,
           "' but no LoRA folder is given (--lora-dir)");
  DF_CHECK(fs::is_directory(lora_dir), "LoRA folder ", lora_dir, " not found");
  const fs::path direct = fs::path(lora_dir) / (name + ".safetensors");
  if (fs::is_regular_file(direct)) return direct.string();
  std::vector<std::string> found;
  for (auto& e :
       fs::recursive_directory_iterator(lora_dir, fs::directory_options::skip_permission_denied))
    if (e.is_regular_file() && e.path().filename() == name + ".safetensors")
      found.push_back(e.path().string());
  DF_CHECK(!found.empty(), "LoRA '", name, "' not found: no ", name, ".safetensors in ", lora_dir);
  std::sort(found.begin(), found.end());
  DF_CHECK(found.size() == 1, "LoRA '", name, "' is ambiguous: ", found[0], " and ", found[1]);
  return found[0];
}

std::vector<models::LoraUse> request_loras(const GenerateRequest& req, std::string* prompt) {
  std::vector<models::LoraUse> loras = req.loras;
  const tokenizer::PromptNetworks parsed = tokenizer::parse_prompt_networks(req.prompt);
  for (auto& t : parsed.loras)
    loras.push_back({find_lora_file(req.lora_dir, t.name), t.unet_weight, t.text_encoder_weight});
  if (prompt) *prompt = parsed.prompt;
  return loras;
}

Conditioning request_conditioning(ModelBundle& model, const GenerateRequest& req,
                                  const std::string& prompt, int64_t clip_skip, bool negative) {
  Conditioning c = model.encode(prompt, clip_skip);
  if (negative && prompt.empty() && model.zeros_for_empty_negative()) {
    c.context = Tensor::zeros(c.context.shape());
    if (c.pooled.defined()) c.pooled = Tensor::zeros(c.pooled.shape());
  }
  c.time_ids = make_time_ids(model.family(), req.size_conditioning, req.width, req.height, negative);
  return c;
}

Tensor sample_latents(ModelBundle& model, const GenerateRequest& req, const Conditioning& cond,
                      const Conditioning& uncond, const Tensor& init_latents, int64_t first_seed,
                      const std::function<void(int, const Tensor&)>& on_step) {
  const auto scope = model.compute_scope();
  const int64_t b = req.batch_size;
  const int64_t f = int64_t(1) << (model.vae_config.block_out_channels.size() - 1);
  const Shape shape = {b, model.vae_config.latent_channels, req.height / f, req.width / f};
  BatchGenerator gen(req.rng, first_seed, b);
  const auto& unet = model.unet();
  const bool cfg = req.cfg_scale > 1.0f;
  // CFG runs both sides in one batch: negative rows first, then positive.
  const Conditioning c =
      cfg ? Conditioning::cat(uncond.repeat(b), cond.repeat(b)) : cond.repeat(b);
  const sampling::SamplerOptions opts = sampler_options(model, req);

  // Inpainting inputs, drawn in diffusers' order: image latents (when needed), noise, then the
  // masked image's latents.
  Tensor mask_lat, masked_lat, image_latents, noise;
  const bool inpaint = req.mask.defined();
  const bool img2img = req.init_image.defined() || req.init_image_latents.defined();
  if (req.init_image_latents.defined())
    image_latents = req.init_image_latents.size(0) == b ? req.init_image_latents
                                                         : repeat_batch(req.init_image_latents, b);
  else if (img2img && (!inpaint || !model.inpaint || req.strength < 1.0))
    image_latents = encode_sample(model, req.init_image, gen, b);
  // A hand-over run starts from latents that are already noisy: no noise is drawn.
  if (init_latents.defined()) noise = init_latents;
  else if (!(img2img && req.denoising_start > 0)) noise = gen.randn(shape);
  if (inpaint) {
    Tensor m = binarize(req.mask);
    Tensor keep = ops::add_scalar(ops::scale(m, -1.0f), 1.0f);  // 1 where the image is kept
    masked_lat = encode_sample(model, ops::mul(req.init_image, keep), gen, b);
    mask_lat = repeat_batch(mask_to_latent_size(m, shape[2], shape[3]), b);
  }

  auto denoise = [&](const Tensor& x, float t) {
    Tensor inp = cfg ? ops::cat({x, x}, 0) : x;
    if (model.inpaint) {
      Tensor mk = cfg ? ops::cat({mask_lat, mask_lat}, 0) : mask_lat;
      Tensor ml = cfg ? ops::cat({masked_lat, masked_lat}, 0) : masked_lat;
      inp = ops::cat({inp, mk, ml}, 1);
    }
    Tensor out = unet.forward(inp, std::vector<float>(size_t(inp.size(0)), t), c.context, c.pooled,
                              c.time_ids);
    if (!cfg) return out;
    Tensor un = out.slice(0, 0, b), co = out.slice(0, b, 2 * b);
    return ops::add(un, ops::scale(ops::sub(co, un), req.cfg_scale));  // uncond + s (cond - uncond)
  };

  sampling::StepFilter filter;
  if (inpaint && !model.inpaint) {
    // Masked img2img with an ordinary model: after each step, the kept region is replaced by
    // the image latents noised to the next step's level.
    Tensor keep = ops::add_scalar(ops::scale(mask_lat, -1.0f), 1.0f);
    filter = [&, keep](const sampling::Scheduler& s, int i, const Tensor& lat) {
      const bool last = i + 1 >= int(s.timesteps().size());
      Tensor proper = last ? image_latents : s.add_noise(image_latents, noise, i + 1);
      return ops::add(ops::mul(keep, proper), ops::mul(mask_lat, lat));
    };
    // strength 1 starts from pure noise, as diffusers' inpaint pipeline does
    if (req.strength >= 1.0) return sampling::sample(opts, noise, denoise, &gen, on_step, filter);
  }
  if (img2img && !(model.inpaint && req.strength >= 1.0)) {
    return sampling::sample_img2img(opts, image_latents, noise, denoise, &gen, on_step, filter);
  }
  return sampling::sample(opts, noise, denoise, &gen, on_step, filter);
}

int steps_per_batch(const ModelBundle& model, const GenerateRequest& req) {
  int hires = 0;
  if (req.hires.enabled) {
    GenerateRequest h = hires_request(model, req);
    h.init_image_latents = Tensor::zeros({1});  // only its presence counts here
    hires = steps_per_batch(model, h);
  }
  const bool img2img = req.init_image.defined() || req.init_image_latents.defined();
  if (!img2img || (model.inpaint && req.strength >= 1.0)) return req.steps + hires;
  return std::max(1, std::min(req.steps, int(req.steps * req.strength))) + hires;
}

ImageParameters image_parameters(const GenerateRequest& req, const std::string& model_name,
                                 int64_t clip_skip) {
  ImageParameters p;
  p.prompt = req.prompt;
  // LoRA files given apart from the prompt are recorded as A1111 would need them: as tags.
  for (auto& l : req.loras) {
    char w[64];
    if (l.unet_weight == l.text_encoder_weight)
      std::snprintf(w, sizeof w, "%g", double(l.unet_weight));
    else
      std::snprintf(w, sizeof w, "%g:%g", double(l.text_encoder_weight), double(l.unet_weight));
    p.prompt += str(p.prompt.empty() ? "" : " ",
                    "<lora:", std::filesystem::path(l.path).stem().string(), ":", w, ">");
  }
  p.negative_prompt = req.negative_prompt;
  p.steps = req.steps;
  p.sampler = req.sampler;
  p.scheduler = req.scheduler;
  p.cfg_scale = req.cfg_scale;
  p.width = req.width;
  p.height = req.height;
  p.model = model_name;
  p.clip_skip = clip_skip;
  p.rng = req.rng;
  if (req.init_image.defined() || req.init_image_latents.defined()) p.denoising_strength = float(req.strength);
  if (req.hires.enabled) {
    const HiresOptions& h = req.hires;
    p.hires = true;
    p.denoising_strength = float(h.strength);
    if (h.width > 0) {
      p.hires_width = h.width;
      p.hires_height = h.height;
    } else {
      p.hires_scale = float(h.scale);
    }
    p.hires_steps = h.steps;
    p.hires_upscaler = find_hires_upscaler(h.upscaler).a1111;
    if (h.sampler != req.sampler) p.hires_sampler = h.sampler;
    if (h.prompt != req.prompt) p.hires_prompt = h.prompt;
    if (h.negative_prompt != req.negative_prompt) p.hires_negative_prompt = h.negative_prompt;
  }
  return p;
}

namespace {

// One side's conditioning pair (negative undefined without CFG) for `model`.
struct CondPair {
  Conditioning cond, uncond;
};
CondPair encode_request(ModelBundle& model, const GenerateRequest& req, const std::string& prompt) {
  const int64_t skip = req.clip_skip > 0 ? req.clip_skip : model.default_clip_skip();
  CondPair p;
  p.cond = request_conditioning(model, req, prompt, skip, false);
  if (req.cfg_scale > 1.0f) p.uncond = request_conditioning(model, req, req.negative_prompt, skip, true);
  return p;
}

// The images of final latents [B, C, h, w], [B, 3, H, W] in [-1, 1] (tiled when asked).
Tensor decode_latents(ModelBundle& model, const Tensor& lat, bool tiled) {
  const auto scope = model.compute_scope();
  std::vector<Tensor> imgs;
  for (int64_t i = 0; i < lat.size(0); ++i) {
    const Tensor z = ops::scale(lat.slice(0, i, i + 1), 1.0f / model.vae_config.scaling_factor);
    imgs.push_back(tiled ? model.vae().decode_tiled(z) : model.vae().decode(z));
  }
  return ops::cat(imgs, 0);
}

// The hires fix's second pass over one batch's final latents (pipeline/hires.h): each image
// upscaled, then img2img at the larger size, its noise from the images' own seeds.
Tensor hires_pass(ModelBundle& model, const GenerateRequest& req, const Tensor& lat,
                  int64_t first_seed, const std::function<void(int, const Tensor&)>& on_step) {
  GenerateRequest h = hires_request(model, req);
  const HiresUpscaler& up = find_hires_upscaler(req.hires.upscaler);
  const int64_t f = vae_factor(model);
  if (up.latent) {
    h.init_image_latents = upscale_latents(lat, up, h.height / f, h.width / f);
  } else {
    h.init_image = upscale_image(decode_latents(model, lat, req.vae_tiling), up, h.height, h.width);
  }
  std::string prompt;
  request_loras(h, &prompt);  // the tags out of the text (the prompt's LoRAs are merged)
  const CondPair c = encode_request(model, h, prompt);
  return sample_latents(model, h, c.cond, c.uncond, Tensor(), first_seed, on_step);
}

}  // namespace

void validate_refiner(const ModelBundle& base, const ModelBundle& refiner, const GenerateRequest& req) {
  DF_CHECK(req.refiner_switch_at > 0 && req.refiner_switch_at < 1,
           "the refiner switch must be in (0, 1), got ", req.refiner_switch_at);
  DF_CHECK(!base.inpaint && !refiner.inpaint && !req.mask.defined(),
           "a refiner does not work with inpainting");
  DF_CHECK(!req.hires.enabled, "the hires fix and a refiner can't be combined yet: run the "
           "refiner on the hires result as img2img");
  DF_CHECK(refiner.vae_config.latent_channels == base.vae_config.latent_channels &&
               refiner.vae_config.scaling_factor == base.vae_config.scaling_factor &&
               refiner.vae_config.block_out_channels.size() == base.vae_config.block_out_channels.size(),
           "the refiner ", refiner.files.path, " (", refiner.family_name(),
           ") does not share the latent space of ", base.files.path, " (", base.family_name(),
           "): its VAE differs");
  validate_request(refiner, req);
}

GenerateResult generate(ModelBundle& model, const GenerateRequest& req, const ProgressFn& progress,
                        ModelBundle* refiner) {
  validate_request(model, req);
  if (refiner) validate_refiner(model, *refiner, req);
  std::string prompt;
  const std::vector<models::LoraUse> loras = request_loras(req, &prompt);
  model.set_loras(loras);
  CondPair base_cond, ref_cond;
  {
    const auto scope = model.compute_scope();
    base_cond = encode_request(model, req, prompt);
  }
  GenerateRequest base_req = req, ref_req = req;
  if (refiner) {
    const auto scope = refiner->compute_scope();
    ref_cond = encode_request(*refiner, req, prompt);
    base_req.denoising_end = req.refiner_switch_at;
    ref_req.denoising_start = req.refiner_switch_at;
    ref_req.init_image = Tensor();
  }
  ModelBundle& decoder = refiner ? *refiner : model;
  GenerateResult res;
  std::vector<Tensor> all_latents;
  for (int batch = 0; batch < req.batch_count; ++batch) {
    const int64_t first_seed = req.seed + int64_t(batch) * req.batch_size;
    Tensor init;
    if (req.init_latents.defined())
      init = req.init_latents.slice(0, batch * req.batch_size, (batch + 1) * req.batch_size).contiguous();
    int done = 0;
    const int total = steps_per_batch(model, req);
    auto on_step = [&](int, const Tensor&) {
      ++done;
      if (progress && !progress(batch, done, total)) throw Error("cancelled");
    };
    Tensor lat = sample_latents(model, base_req, base_cond.cond, base_cond.uncond, init, first_seed, on_step);
    if (refiner) {
      ref_req.init_image_latents = lat;
      lat = sample_latents(*refiner, ref_req, ref_cond.cond, ref_cond.uncond, Tensor(), first_seed,
                           on_step);
    }
    if (req.hires.enabled) lat = hires_pass(model, req, lat, first_seed, on_step);
    DF_CHECK(all_finite(lat), "sampling produced non-finite latents (NaN or Inf) with ",
             req.sampler, ": the model's weights, a LoRA weight or a setting (eta, cfg scale) "
             "overflowed; nothing was decoded");
    all_latents.push_back(lat);
    for (int64_t i = 0; i < lat.size(0); ++i) {
      auto imgs = tensor_to_images(decode_latents(decoder, lat.slice(0, i, i + 1), req.vae_tiling));
      res.images.push_back(std::move(imgs[0]));
      res.seeds.push_back(first_seed + i);
    }
  }
  res.latents = ops::cat(all_latents, 0);
  return res;
}

}  // namespace diffuse::pipeline
