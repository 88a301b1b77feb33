#include "train/r_precision.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/json_file.h"
#include "io/safetensors.h"
#include "nn/functional.h"
#include "train/dataset.h"

namespace diffuse::train {

namespace fs = std::filesystem;
namespace F = nn::F;

RPrecision r_precision(const Tensor& scores_) {
  DF_CHECK(scores_.dim() == 2 && scores_.size(0) == scores_.size(1) && scores_.size(0) > 0,
           "R-precision: expected a square [images, captions] score matrix, got ", scores_.desc());
  const Tensor scores = scores_.to(DType::F32).contiguous();
  const int64_t n = scores.size(0);
  const float* s = scores.data<float>();
  RPrecision r;
  r.total = n;
  r.rivals.assign(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    const float own = s[i * n + i];
    DF_CHECK(std::isfinite(own), "R-precision: image ", i, "'s score for its caption is ", own);
    for (int64_t j = 0; j < n; ++j)
      if (j != i && !(s[i * n + j] < own)) ++r.rivals[size_t(i)];  // ties and NaN count against
    if (r.rivals[size_t(i)] == 0) ++r.hits;
  }
  return r;
}

std::unique_ptr<models::ClipModel> load_clip_folder(const std::string& dir,
                                                    const std::string& text_weights) {
  const fs::path config_file = fs::path(dir) / "config.json";
  const fs::path weights_file = fs::path(dir) / "model.safetensors";
  DF_CHECK(fs::is_regular_file(config_file), "no CLIP at ", dir,
           ": expected a transformers CLIPModel folder (config.json + model.safetensors)");
  DF_CHECK(fs::is_regular_file(weights_file), "CLIP folder ", dir, " has no model.safetensors");
  const nlohmann::json config = read_json_file(config_file.string());
  auto clip = std::make_unique<models::ClipModel>(models::ClipModelConfig::from_json(config));

  io::TensorMap weights = io::load_safetensors(weights_file.string());
  std::string what = "CLIP " + weights_file.string();
  const std::string probe = "text_model.embeddings.token_embedding.weight";
  if (!weights.count(probe) && !text_weights.empty()) {
    DF_CHECK(fs::is_regular_file(text_weights), "CLIP ", weights_file.string(),
             " has no text tower and ", text_weights, " does not exist");
    for (auto& [name, t] : io::load_safetensors(text_weights))
      if (name.rfind("text_model.", 0) == 0) weights.emplace(name, t);
    what += " (text tower from " + text_weights + ")";
  }
  // transformers' non-persistent buffers, present in some saved files
  for (auto it = weights.begin(); it != weights.end();)
    it = it->first.ends_with("position_ids") ? weights.erase(it) : std::next(it);
  clip->load_state_dict(weights, what);
  return clip;
}

Tensor clip_pixels(const io::Image& img, int64_t image_size) {
  const io::Image r = resize_and_center_crop(img, int(image_size));
  const int64_t s = image_size;
  Tensor t = Tensor::empty({1, 3, s, s});
  float* p = t.data<float>();
  // h w c -> c h w, [0, 255] -> [0, 1] -> normalized per channel
  for (int64_t y = 0; y < s; ++y)
    for (int64_t x = 0; x < s; ++x)
      for (int64_t k = 0; k < 3; ++k)
        p[(k * s + y) * s + x] =
            (r.pixels[size_t((y * s + x) * 3 + k)] / 255.f - kClipImageMean[k]) / kClipImageStd[k];
  return t;
}

Tensor clip_scores(const models::ClipModel& clip, const Tensor& ids, const Tensor& pixels) {
  const auto& v = clip.config().vision;
  DF_CHECK(ids.dim() == 2, "CLIP scores: token ids must be [captions, length], got ", ids.desc());
  DF_CHECK(pixels.dim() == 4 && pixels.size(1) == v.num_channels &&
               pixels.size(2) == v.image_size && pixels.size(3) == v.image_size,
           "CLIP scores: pixels must be [images, ", v.num_channels, ", ", v.image_size, ", ",
           v.image_size, "], got ", pixels.desc());
  return clip.forward(ids, pixels).logits_per_image.contiguous();  // [Ni, Nt]
}

}  // namespace diffuse::train
