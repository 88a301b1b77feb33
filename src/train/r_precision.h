// CLIP R-precision: how often an image's own caption scores highest among a set of captions,
// scored by a trained CLIP (text and vision towers with their projections). `diffuse eval`
// reports it for images generated from held-out captions and for the real held-out images.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/image.h"
#include "models/clip/clip_vision_model.h"

namespace diffuse::train {

struct RPrecision {
  int64_t hits = 0, total = 0;
  // Per image: how many other captions score at least as high as its own (0 = a hit).
  std::vector<int64_t> rivals;
  double value() const { return total > 0 ? double(hits) / double(total) : 0.0; }
};

// scores [N images, N captions], image i's own caption being caption i. Image i is a hit when
// its own caption scores strictly higher than every other caption: a tie is a miss.
RPrecision r_precision(const Tensor& scores);

// A transformers CLIPModel folder: config.json (CLIPConfig, with text_config and vision_config)
// and model.safetensors. When the folder's weights lack the text tower, it is read from
// `text_weights` (a CLIPTextModel's safetensors with the same "text_model." names, e.g. a
// diffusers model's text_encoder/model.safetensors), so that a model conditioned on the CLIP's
// text tower need not store it twice. Strict: missing or unexpected tensors are listed.
std::unique_ptr<models::ClipModel> load_clip_folder(const std::string& dir,
                                                    const std::string& text_weights = "");

// OpenAI CLIP's per-channel image normalization (of pixels in [0, 1]), which `diffuse train
// clip` applies too.
inline constexpr float kClipImageMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
inline constexpr float kClipImageStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

// An image as the CLIP sees it in training: alpha over white, shorter side resized to
// `image_size` and center-cropped (resize_and_center_crop), then [1, 3, S, S] normalized per
// channel: (pixel / 255 - mean) / std.
Tensor clip_pixels(const io::Image& img, int64_t image_size);

// Logits of every image against every caption: ids integer [Nt, L], pixels [Ni, 3, S, S];
// returns [Ni, Nt] (exp(logit_scale) times the cosine similarity of the projections).
Tensor clip_scores(const models::ClipModel& clip, const Tensor& ids, const Tensor& pixels);

}  // namespace diffuse::train
