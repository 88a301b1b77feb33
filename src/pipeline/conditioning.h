// What the UNet is conditioned on for one side of classifier-free guidance: the text context of
// any length (77 tokens per chunk), and for families with added conditioning (SDXL) the pooled
// text embedding and the time ids. The pipeline hands one to the sampler's denoiser.
#pragma once
#include "core/tensor.h"
#include "pipeline/family.h"

namespace diffuse::pipeline {

// t repeated n times along the batch: [1, ...] -> [n, ...] (an undefined t stays undefined).
Tensor repeat_batch(const Tensor& t, int64_t n);

struct Conditioning {
  Tensor context;   // [B, L, D]
  Tensor pooled;    // [B, P]: the projected pooled text embedding (SDXL); else undefined
  Tensor time_ids;  // [B, n]: the added time ids (SDXL); else undefined

  int64_t batch() const { return context.defined() ? context.size(0) : 0; }
  // Every tensor repeated n times along the batch: [1, ...] -> [n, ...].
  Conditioning repeat(int64_t n) const;
  // a's rows, then b's (the two must hold the same tensors).
  static Conditioning cat(const Conditioning& a, const Conditioning& b);
};

// The micro-conditioning of an SDXL image (diffusers' original_size, crops_coords_top_left,
// target_size, aesthetic_score), in pixels.
struct SizeConditioning {
  int64_t original_width = 0, original_height = 0;  // 0: the image's size
  int64_t crop_left = 0, crop_top = 0;
  int64_t target_width = 0, target_height = 0;  // 0: the image's size
  float aesthetic_score = 6.0f, negative_aesthetic_score = 2.5f;
};

// The family's time ids for a width x height image, [1, n] (undefined for a family without
// them). The negative side differs only by its aesthetic score (the refiner's).
Tensor make_time_ids(const FamilyInfo& family, const SizeConditioning& s, int64_t width,
                     int64_t height, bool negative);

}  // namespace diffuse::pipeline
