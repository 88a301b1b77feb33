// diffuse generate: text to image, image to image and inpainting.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <tuple>
#include <utility>

#include "apps/cli/command.h"
#include "apps/cli/common.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "core/sysinfo.h"
#include "io/safetensors.h"
#include "pipeline/generate.h"
#include "pipeline/image_tensor.h"
#include "pipeline/parameters.h"

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;

// The largest -i/--mask side read by default: the server's limit for uploaded images.
constexpr int kMaxImageSide = 4096;

struct GenerateArgs {
  std::string model, config, output = "output.png";
  std::string refiner;  // --refiner MODEL
  std::string init_image, mask, init_latents, save_latents;
  pipeline::GenerateRequest req;
  std::vector<std::string> loras;  // --lora FILE[:WEIGHT]
  int64_t width = 0, height = 0;
  int threads = 0;
  int max_size = kMaxImageSide;
  std::string precision = "auto";
  std::string original_size, crop_top_left, target_size;  // SDXL micro-conditioning: "A,B"
  double hires_scale = 0;                                   // --hires-scale (0: not given)
  std::string hires_size;                                   // --hires-size WxH
  bool quiet = false;
};

// "A,B" (two non-negative integers) of option `what`.
std::pair<int64_t, int64_t> parse_pair(const std::string& s, const char* what) {
  long long x = -1, y = -1;
  char extra = 0;
  DF_CHECK(std::sscanf(s.c_str(), "%lld,%lld%c", &x, &y, &extra) == 2 && x >= 0 && y >= 0 &&
               x <= 1 << 20 && y <= 1 << 20,
           what, " takes two non-negative integers A,B, got '", s, "'");
  return {x, y};
}

// "WxH" of option `what`.
std::pair<int64_t, int64_t> parse_size(const std::string& s, const char* what) {
  long long w = -1, h = -1;
  char extra = 0;
  DF_CHECK(std::sscanf(s.c_str(), "%lldx%lld%c", &w, &h, &extra) == 2 && w > 0 && h > 0 &&
               w <= 1 << 20 && h <= 1 << 20,
           what, " takes a size WxH in pixels (e.g. 1024x768), got '", s, "'");
  return {w, h};
}

// --hires-scale / --hires-size: the hires fix is on when either is given.
void set_hires(GenerateArgs& a) {
  auto& h = a.req.hires;
  DF_CHECK(a.hires_scale == 0 || a.hires_size.empty(), "give --hires-scale or --hires-size, not both");
  if (a.hires_scale != 0) {
    h.enabled = true;
    h.scale = a.hires_scale;
  }
  if (!a.hires_size.empty()) {
    h.enabled = true;
    std::tie(h.width, h.height) = parse_size(a.hires_size, "--hires-size");
  }
}

// out.png -> out-1.png, out-2.png ... when a run makes several images.
std::string numbered(const std::string& path, size_t i, size_t n) {
  if (n == 1) return path;
  fs::path p(path);
  std::string stem = p.stem().string(), ext = p.extension().string();
  return (p.parent_path() / (stem + "-" + std::to_string(i + 1) + (ext.empty() ? ".png" : ext)))
      .string();
}

// --lora FILE[:WEIGHT]: the weight is what follows the last ':' when it is a number (1 if none).
models::LoraUse parse_lora_option(const std::string& arg) {
  models::LoraUse l{arg};
  const size_t colon = arg.rfind(':');
  if (colon != std::string::npos && colon > 0) {
    const std::string w = arg.substr(colon + 1);
    char* end = nullptr;
    const float v = std::strtof(w.c_str(), &end);
    if (!w.empty() && end == w.c_str() + w.size()) {
      DF_CHECK(std::isfinite(v) && std::fabs(v) <= 100, "--lora ", arg, ": the weight ", w,
               " is not a number in [-100, 100]");
      l = {arg.substr(0, colon), v, v};
    }
  }
  DF_CHECK(fs::is_regular_file(l.path), "--lora: LoRA file ", l.path, " not found");
  return l;
}

// Everything that can be checked before the model is loaded: sizes, inputs, outputs.
void check_arguments(const GenerateArgs& a) {
  for (const auto& [opt, v] :
       {std::pair{"-W/--width", a.width}, std::pair{"-H/--height", a.height}})
    DF_CHECK(v <= a.max_size, opt, " ", v, " is above --max-size ", a.max_size);
  if (!a.init_image.empty()) check_input_file(a.init_image, "-i/--init-image");
  if (!a.mask.empty()) check_input_file(a.mask, "--mask");
  if (!a.init_latents.empty()) check_input_file(a.init_latents, "--init-latents");
  const size_t n = size_t(a.req.batch_size) * size_t(a.req.batch_count);
  for (size_t i = 0; i < n; ++i) check_output_path(numbered(a.output, i, n), "-o/--output");
  if (!a.save_latents.empty()) check_output_path(a.save_latents, "--save-latents");
  DF_CHECK(!a.req.hires.enabled || (a.init_image.empty() && a.mask.empty()),
           "the hires fix (--hires-scale, --hires-size) is a txt2img second pass: it does not take "
           "-i or --mask");
}

int run_generate(GenerateArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  set_hires(a);
  check_arguments(a);
  auto& req = a.req;
  for (auto& l : a.loras) req.loras.push_back(parse_lora_option(l));
  if (req.rng == "torch") req.rng = "cpu";
  if (req.seed < 0) req.seed = int64_t(std::random_device{}() & 0x7fffffff);
  a.model = model_or_default(a.model);
  auto model = open_model(a.model, a.config, pipeline::parse_precision(a.precision));
  const int64_t def = model->default_image_size();
  req.width = a.width > 0 ? a.width : def;
  req.height = a.height > 0 ? a.height : def;
  if (!a.init_image.empty()) {
    io::Image img = io::load_image(a.init_image, 3, a.max_size);
    if (a.width <= 0) req.width = img.width;
    if (a.height <= 0) req.height = img.height;
    DF_CHECK(img.width == req.width && img.height == req.height, a.init_image, " is ", img.width,
             "x", img.height, " but the requested size is ", req.width, "x", req.height);
    req.init_image = pipeline::image_to_tensor(img);
  }
  if (!a.mask.empty()) {
    DF_CHECK(!a.init_image.empty(), "--mask needs an init image (-i)");
    io::Image m = io::load_image(a.mask, 0, a.max_size);
    DF_CHECK(m.width == req.width && m.height == req.height, "the mask ", a.mask, " is ", m.width,
             "x", m.height, " but the image is ", req.width, "x", req.height);
    req.mask = pipeline::mask_to_tensor(m);
  }
  if (!a.init_latents.empty()) {
    auto t = io::load_safetensors(a.init_latents);
    DF_CHECK(t.size() == 1, a.init_latents, ": expected one tensor, found ", t.size());
    req.init_latents = t.begin()->second.to(DType::F32).contiguous();
  }
  auto& sc = req.size_conditioning;
  if (!a.original_size.empty())
    std::tie(sc.original_width, sc.original_height) = parse_pair(a.original_size, "--original-size");
  if (!a.crop_top_left.empty())
    std::tie(sc.crop_left, sc.crop_top) = parse_pair(a.crop_top_left, "--crop-top-left");
  if (!a.target_size.empty())
    std::tie(sc.target_width, sc.target_height) = parse_pair(a.target_size, "--target-size");
  std::unique_ptr<pipeline::ModelBundle> refiner;
  if (!a.refiner.empty()) refiner = open_model(a.refiner, "", pipeline::parse_precision(a.precision));
  pipeline::validate_request(*model, req);
  const int64_t clip_skip = req.clip_skip > 0 ? req.clip_skip : model->default_clip_skip();
  std::fprintf(stderr, "diffuse: %s, %lldx%lld, %d steps of %s, seed %lld, %s, %d threads\n",
               model->family_name().c_str(), (long long)req.width,
               (long long)req.height, req.steps, req.sampler.c_str(), (long long)req.seed,
               pipeline::precision_name(model->precision()), num_threads());
  if (req.hires.enabled) {
    const auto h = pipeline::hires_request(*model, req);
    DF_CHECK(h.width <= a.max_size && h.height <= a.max_size, "the hires size ", h.width, "x",
             h.height, " is above --max-size ", a.max_size);
    std::fprintf(stderr, "diffuse: hires fix to %lldx%lld, %d steps of %s at strength %g, %s\n",
                 (long long)h.width, (long long)h.height, h.steps, h.sampler.c_str(), h.strength,
                 req.hires.upscaler.c_str());
  }

  const int per_batch = pipeline::steps_per_batch(*model, req);
  Progress bar("sampling", int64_t(per_batch) * req.batch_count, !a.quiet);
  // Time spent in sampling steps (each step's interval), the rest is text encoding + decoding.
  double step_time = 0, last = -1;
  int steps_done = 0;
  auto res = pipeline::generate(*model, req, [&](int batch, int step, int) {
    const double now = bar.elapsed_s();
    if (step > 1 && last >= 0) {
      step_time += now - last;
      ++steps_done;
    }
    last = now;
    bar.update(int64_t(batch) * per_batch + std::min(step, per_batch));
    return true;
  }, refiner.get());
  bar.finish();
  const double total = bar.elapsed_s();
  std::fprintf(stderr, "diffuse: %.2f s per step, %.1f s in all, peak memory %.0f MiB\n",
               steps_done > 0 ? step_time / steps_done : total / std::max(1, per_batch), total,
               peak_rss_mib());

  pipeline::ImageParameters p = pipeline::image_parameters(
      req, fs::path(a.model).filename().replace_extension().string(), clip_skip);
  if (refiner) {
    p.refiner = fs::path(a.refiner).filename().replace_extension().string();
    p.refiner_switch_at = float(req.refiner_switch_at);
  }
  for (size_t i = 0; i < res.images.size(); ++i) {
    p.seed = res.seeds[i];
    std::string out = numbered(a.output, i, res.images.size());
    io::save_png(out, res.images[i], {{"parameters", pipeline::format_parameters(p)}});
    std::printf("%s seed=%lld\n", out.c_str(), (long long)res.seeds[i]);
  }
  if (!a.save_latents.empty()) {
    io::save_safetensors(a.save_latents, {{"latents", res.latents}});
    std::fprintf(stderr, "wrote %s (%s)\n", a.save_latents.c_str(), res.latents.desc().c_str());
  }
  return 0;
}

Command generate_cmd(
    "generate", "Generate images from a prompt (txt2img), an image (img2img) or a masked image",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<GenerateArgs>();
      auto& r = a->req;
      add_model_options(sub, a->model, a->config, false, true);
      sub.add_option("-p,--prompt", r.prompt, "What to draw")->required();
      sub.add_option("-n,--negative-prompt", r.negative_prompt, "What to avoid");
      sub.add_option("--steps", r.steps, "Sampling steps")
          ->capture_default_str()
          ->check(CLI::Range(1, 1000));
      sub.add_option("--cfg-scale", r.cfg_scale, "Classifier-free guidance scale (1 = none)")
          ->capture_default_str()
          ->check(finite_range(-100, 100));
      sub.add_option("--sampler", r.sampler,
                     "pndm, ddim, euler, euler_a, heun, lms, dpm2, dpm2_a, dpmpp_2m, dpmpp_2m_sde, "
                     "dpmpp_2s, unipc, deis, ddpm, lcm, tcd")
          ->capture_default_str();
      sub.add_option("--scheduler", r.scheduler, "Noise schedule: default, karras or trailing")
          ->capture_default_str();
      sub.add_option("-W,--width", a->width,
                     "Width in pixels, a multiple of 8 (default: the model's own: its UNet "
                     "config's sample_size in pixels, else 512, 768 for SD2-v, 1024 for SDXL)")
          ->check(CLI::Range(int64_t(8), int64_t(65536)));
      sub.add_option("-H,--height", a->height, "Height in pixels, a multiple of 8")
          ->check(CLI::Range(int64_t(8), int64_t(65536)));
      sub.add_option("-s,--seed", r.seed, "Seed; -1 picks one at random (printed)")
          ->capture_default_str()
          ->check(seed_range());
      sub.add_option("--rng", r.rng,
                     "Noise generator: torch/cpu (torch's CPU generator, as diffusers) or cuda "
                     "(torch's CUDA generator, as AUTOMATIC1111)")
          ->capture_default_str();
      sub.add_option("-b,--batch-size", r.batch_size, "Images per batch")
          ->capture_default_str()
          ->check(CLI::Range(1, 64));
      sub.add_option("--batch-count", r.batch_count, "Batches, one after another")
          ->capture_default_str()
          ->check(CLI::Range(1, 10000));
      sub.add_option("--clip-skip", r.clip_skip,
                     "Use the K-th text encoder block from the end, as AUTOMATIC1111 counts "
                     "(SD1 default 1; SD2 and SDXL default 2, their penultimate block)")
          ->check(CLI::Range(1, 48));
      sub.add_option("-i,--init-image", a->init_image, "img2img: the starting image");
      sub.add_option("--strength", r.strength, "img2img: how much to change the image, in (0, 1]")
          ->capture_default_str()
          ->check(finite_range(0, 1));
      sub.add_option("--mask", a->mask,
                     "Inpainting: white = repaint, black = keep (same size as -i)");
      sub.add_option("--max-size", a->max_size,
                     "Largest width or height: of the output (-W, -H), and of -i and --mask, "
                     "checked from the file's header before its pixels are read")
          ->capture_default_str()
          ->check(CLI::Range(8, 65536));
      sub.add_option("--eta", r.eta, "DDIM/TCD noise (eta)")
          ->capture_default_str()
          ->check(finite_range(0, 1));
      sub.add_option("--init-latents", a->init_latents,
                     "A .safetensors with one f32 tensor [B, 4, h, w]: the starting noise");
      sub.add_option(
          "--save-latents", a->save_latents,
          "Write the final latents (tensor 'latents', before the VAE) to this .safetensors");
      sub.add_option("--lora", a->loras,
                     "Apply a LoRA file (kohya .safetensors): FILE or FILE:WEIGHT (repeatable)");
      sub.add_option("--lora-dir", r.lora_dir,
                     "Folder of LoRA files for <lora:NAME:WEIGHT> tags in the prompt");
      sub.add_option("--original-size", a->original_size,
                     "SDXL micro-conditioning: the size W,H the training image is said to have "
                     "had (default: the image size; smaller sizes look upscaled)");
      sub.add_option("--crop-top-left", a->crop_top_left,
                     "SDXL: the crop's top-left corner X,Y (default 0,0: centred, uncropped "
                     "subjects)");
      sub.add_option("--target-size", a->target_size, "SDXL: the target size W,H (default: the image size)");
      sub.add_option("--aesthetic-score", r.size_conditioning.aesthetic_score,
                     "SDXL refiner: the aesthetic score conditioning the prompt")
          ->capture_default_str();
      sub.add_option("--negative-aesthetic-score", r.size_conditioning.negative_aesthetic_score,
                     "SDXL refiner: the aesthetic score conditioning the negative prompt")
          ->capture_default_str();
      sub.add_option("--refiner", a->refiner,
                     "A second model that finishes the image (the SDXL refiner): the base model "
                     "denoises the first part of the steps, the refiner the rest");
      sub.add_option("--refiner-switch-at", r.refiner_switch_at,
                     "With --refiner: the fraction of the steps the base model runs, in (0, 1)")
          ->capture_default_str();
      auto& h = r.hires;
      sub.add_option("--hires-scale", a->hires_scale,
                     "Hires fix (txt2img): render at -W x -H, upscale by this factor and refine "
                     "the result with an img2img pass at the larger size")
          ->check(finite_range(1, 8));
      sub.add_option("--hires-size", a->hires_size, "Hires fix to this size WxH instead of a factor");
      std::string ups;
      for (auto& u : pipeline::hires_upscalers())
        ups += str(ups.empty() ? "" : ", ", u.name, u.latent ? "" : " (image)");
      sub.add_option("--hires-upscaler", h.upscaler,
                     "Hires fix: how the first pass is enlarged: " + ups +
                         ". latent* resize the latents (A1111's \"Latent\" upscalers); the "
                         "image ones decode, resize the picture and encode it again")
          ->capture_default_str();
      sub.add_option("--hires-steps", h.steps,
                     "Hires fix: the second pass's steps, of which the last steps x strength run "
                     "(0 = --steps)")
          ->capture_default_str()
          ->check(CLI::Range(0, 1000));
      sub.add_option("--hires-strength", h.strength,
                     "Hires fix: the second pass's denoising strength, in (0, 1]")
          ->capture_default_str()
          ->check(finite_range(0, 1));
      sub.add_option("--hires-sampler", h.sampler, "Hires fix: the second pass's sampler (default: --sampler)");
      sub.add_option("--hires-prompt", h.prompt, "Hires fix: the second pass's prompt (default: -p)");
      sub.add_option("--hires-negative-prompt", h.negative_prompt,
                     "Hires fix: the second pass's negative prompt (default: -n)");
      sub.add_option("-o,--output", a->output, "Output PNG; several images get -1, -2 ... suffixes")
          ->capture_default_str();
      add_threads_option(sub, a->threads);
      add_precision_option(sub, a->precision);
      sub.add_flag("--vae-tiling", r.vae_tiling,
                   "Decode images larger than the VAE's tile (its sample_size, 512 px for SD) in "
                   "overlapping tiles, as diffusers' enable_vae_tiling(): the decoder's memory "
                   "stays one tile's at any size; seams are blended over a quarter of a tile");
      sub.add_flag("-q,--quiet", a->quiet, "No progress bar");
      sub.footer(
          "Examples:\n"
          "  diffuse generate -m v1-5-pruned-emaonly.safetensors -p \"a red fox in snow\" -o "
          "fox.png\n"
          "  diffuse generate -m sd15 -p \"oil painting\" -i photo.png --strength 0.6 -o "
          "paint.png\n"
          "  diffuse generate -m sd15-inpainting.safetensors -p \"a cat\" -i room.png --mask "
          "m.png\n"
          "  diffuse generate -m sd15 -p \"a cat <lora:watercolor:0.8>\" --lora-dir loras/\n"
          "  diffuse generate -m sd_xl_base_1.0.safetensors -p \"a lighthouse at dusk\" "
          "(1024x1024)\n"
          "  diffuse generate -m sd_xl_turbo_1.0.safetensors -p \"a corgi\" --steps 1 "
          "--cfg-scale 0 --scheduler trailing -W 512 -H 512   (SDXL-Turbo)\n"
          "  diffuse generate -m sd15 -p \"a castle\" -W 512 -H 512 --hires-scale 2 "
          "--hires-steps 10   (hires fix: 1024x1024)\n"
          "The PNG carries the parameters in AUTOMATIC1111's format (PNG Info).");
      r.seed = -1;
      r.rng = "cpu";
      return [a]() { return run_generate(*a); };
    });

}  // namespace
}  // namespace diffuse::cli
