// diffuse eval: CLIP R-precision of a text-to-image model on held-out captions, beside the same
// figure for the real held-out images.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "apps/cli/command.h"
#include "apps/cli/common.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "io/mmap_file.h"
#include "ops/ops.h"
#include "pipeline/generate.h"
#include "train/dataset.h"
#include "train/r_precision.h"

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;

struct EvalArgs {
  std::string model, config, data, clip, save_images;
  pipeline::GenerateRequest req;
  int64_t count = 100, width = 0, height = 0;
  int threads = 0;
  bool json = false, quiet = false;
};

// Shortest text that reads back as the same double ("0.34", not "0.34000000000000002").
std::string shortest(double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// `count` positions spread evenly over 0..n-1 (all of them when count == n).
std::vector<int64_t> spread(int64_t n, int64_t count) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < count; ++i) idx.push_back(i * n / count);
  return idx;
}

void write_metadata(const std::string& dir, const std::vector<std::string>& files,
                    const std::vector<std::string>& captions) {
  std::string text;
  for (size_t i = 0; i < files.size(); ++i)
    text += nlohmann::json{{"file_name", files[i]}, {"text", captions[i]}}.dump() + "\n";
  io::AtomicWriter w((fs::path(dir) / "metadata.jsonl").string());
  w.write(text.data(), text.size());
  w.commit();
}

int run_eval(EvalArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  a.model = model_or_default(a.model);
  DF_CHECK(a.count >= 2, "--count must be at least 2, got ", a.count);

  // The held-out captions: `count` of them spread evenly over the folder's images (sorted by
  // file name), each caption distinct.
  const auto data = train::ImageCaptionDataset::open(a.data);
  DF_CHECK(data.size() >= a.count, a.data, " has ", data.size(),
           " captioned images, fewer than --count ", a.count);
  const auto picked = spread(data.size(), a.count);
  std::vector<std::string> captions;
  std::set<std::string> seen;
  for (int64_t i : picked) {
    const std::string& c = data[i].caption;
    DF_CHECK(seen.insert(c).second, a.data, ": two held-out images share the caption \"", c,
             "\"; R-precision needs distinct captions");
    captions.push_back(c);
  }

  auto model = open_model(a.model, a.config);
  const std::string clip_dir = a.clip.empty() ? (fs::path(a.model) / "clip").string() : a.clip;
  DF_CHECK(fs::is_regular_file(fs::path(clip_dir) / "config.json"), "no CLIP found at ", clip_dir,
           ": give --clip DIR, a transformers CLIPModel folder (config.json + model.safetensors)");
  const fs::path text_weights = fs::path(a.model) / "text_encoder" / "model.safetensors";
  auto clip = train::load_clip_folder(
      clip_dir, fs::is_regular_file(text_weights) ? text_weights.string() : "");
  const int64_t res = clip->config().vision.image_size;

  // Token ids [count, L] with the model's tokenizer, padded with the end token to the CLIP's
  // context length (as diffuse train clip does).
  std::vector<int64_t> ids;
  const int64_t len = clip->config().text.max_position_embeddings;
  for (const auto& c : captions) {
    auto v = model->tokenizer().encode_padded(c, clip->config().text.eos_token_id, int(len));
    ids.insert(ids.end(), v.begin(), v.end());
  }
  const Tensor id_tensor = Tensor::from_i64(ids, {a.count, len});

  // Real images, and the generation size: the held-out images' (unless -W/-H).
  std::vector<Tensor> real;
  int64_t width = a.width, height = a.height;
  for (int64_t i : picked) {
    const io::Image img = io::load_image(data[i].image_path);
    if (width <= 0) width = img.width;
    if (height <= 0) height = img.height;
    real.push_back(train::clip_pixels(img, res));
  }
  auto& req = a.req;
  req.width = width;
  req.height = height;
  req.batch_size = req.batch_count = 1;
  req.prompt = captions[0];
  pipeline::validate_request(*model, req);
  if (!a.save_images.empty()) fs::create_directories(a.save_images);

  const int per_image = pipeline::steps_per_batch(*model, req);
  std::fprintf(stderr, "diffuse eval: %lld captions from %s, %lldx%lld, %d steps of %s, CLIP %s\n",
               (long long)a.count, a.data.c_str(), (long long)width, (long long)height, req.steps,
               req.sampler.c_str(), clip_dir.c_str());
  Progress bar("step", a.count * per_image, !a.quiet);
  std::vector<Tensor> generated;
  std::vector<std::string> files;
  const int64_t seed = req.seed;
  for (int64_t i = 0; i < a.count; ++i) {
    req.prompt = captions[size_t(i)];
    req.seed = seed + i;
    auto res_i = pipeline::generate(*model, req, [&](int, int step, int) {
      bar.update(i * per_image + std::min(step, per_image));
      return true;
    });
    const io::Image& img = res_i.images.at(0);
    generated.push_back(train::clip_pixels(img, res));
    if (!a.save_images.empty()) {
      char name[32];
      std::snprintf(name, sizeof name, "%04lld.png", (long long)i);
      io::save_png((fs::path(a.save_images) / name).string(), img);
      files.push_back(name);
    }
  }
  bar.finish();
  if (!a.save_images.empty()) write_metadata(a.save_images, files, captions);

  const auto gen = train::r_precision(train::clip_scores(*clip, id_tensor, ops::cat(generated, 0)));
  const auto real_r = train::r_precision(train::clip_scores(*clip, id_tensor, ops::cat(real, 0)));
  std::printf("CLIP R-precision@1 over %lld held-out captions (each image against all %lld)\n",
              (long long)a.count, (long long)a.count);
  std::printf("  %-10s %9s  %s\n", "images", "hits", "R-precision");
  for (const auto& [name, r] : {std::pair{"generated", gen}, std::pair{"real", real_r}}) {
    const std::string hits = std::to_string(r.hits) + "/" + std::to_string(r.total);
    std::printf("  %-10s %9s  %.3f\n", name, hits.c_str(), r.value());
  }
  if (real_r.hits > 0) std::printf("  generated / real: %.2f\n", gen.value() / real_r.value());
  if (a.json)
    std::printf("{\"r_precision_generated\": %s, \"r_precision_real\": %s}\n",
                shortest(gen.value()).c_str(), shortest(real_r.value()).c_str());
  return 0;
}

Command eval_cmd(
    "eval", "CLIP R-precision of generated images on held-out captions, beside the real images'",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<EvalArgs>();
      auto& r = a->req;
      add_model_options(sub, a->model, a->config, false, true);
      sub.add_option("--data", a->data,
                     "Held-out folder: images with captions (metadata.jsonl or same-name .txt)")
          ->required();
      sub.add_option("--clip", a->clip,
                     "CLIPModel folder (config.json + model.safetensors) that scores the images "
                     "(default: MODEL/clip; a missing text tower is read from MODEL/text_encoder)");
      sub.add_option("--count", a->count,
                     "Captions, spread evenly over the folder's (sorted by file name)")
          ->capture_default_str();
      sub.add_option("--steps", r.steps, "Sampling steps")
          ->capture_default_str()
          ->check(CLI::Range(1, 1000));
      sub.add_option("--cfg-scale", r.cfg_scale, "Classifier-free guidance scale (1 = none)")
          ->capture_default_str();
      sub.add_option("--sampler", r.sampler, "Sampler (as diffuse generate)")
          ->capture_default_str();
      sub.add_option("--scheduler", r.scheduler, "Noise schedule: default, karras or trailing")
          ->capture_default_str();
      sub.add_option("-s,--seed", r.seed, "Seed of the first caption's image (image i: seed + i)")
          ->capture_default_str();
      sub.add_option("-W,--width", a->width,
                     "Width of the generated images (default: the held-out images')");
      sub.add_option("-H,--height", a->height, "Height of the generated images");
      sub.add_option("--save-images", a->save_images,
                     "Also write the generated images and their captions (metadata.jsonl) here");
      add_threads_option(sub, a->threads);
      sub.add_flag(
          "--json", a->json,
          "End with one JSON line: {\"r_precision_generated\": x, \"r_precision_real\": y}");
      sub.add_flag("-q,--quiet", a->quiet, "No progress bar");
      sub.footer(
          "Each generated image counts as a hit when the CLIP scores its own caption strictly\n"
          "above every other of the --count captions (ties are misses); the real held-out\n"
          "images, resized as the CLIP was trained, are scored the same way.\n"
          "Example:\n"
          "  diffuse eval -m MODEL --data emoji/heldout --count 100 --json");
      r.seed = 0;
      r.rng = "cpu";
      return [a]() { return run_eval(*a); };
    });

}  // namespace
}  // namespace diffuse::cli
