// The HTTP APIs' requests and responses, as JSON: AUTOMATIC1111's /sdapi/v1 (txt2img,
// img2img, samplers, schedulers, models), OpenAI's /v1/images/generations and the server's own
// job API. Each parser checks every field it reads (type, range, known names) and throws
// ApiError naming the field and the problem.
#pragma once
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "apps/server/jobs.h"
#include "apps/server/model_dir.h"

namespace diffuse::server {

// What a request does not say: the server's options.
struct RequestDefaults {
  std::string model;      // A1111's sd_model_checkpoint
  int64_t clip_skip = 0;  // A1111's CLIP_stop_at_last_layers; 0 = the model family's default
  int max_size = 2048;    // the largest width or height
  // Limits of a request (serve --max-steps ...), A1111's UI limits by default.
  int max_steps = 150, max_batch_size = 8, max_batch_count = 100;
  size_t max_prompt_length = 20000;  // characters of a prompt or negative prompt
  std::string lora_dir;              // where <lora:NAME:WEIGHT> prompt tags find NAME.safetensors
  bool vae_tiling = false;           // decode large images in tiles (serve --vae-tiling)
};

// The largest request body (base64 images included) and the deepest JSON nesting a request
// may have.
constexpr size_t kMaxJsonBody = size_t(64) << 20;
constexpr size_t kMaxJsonDepth = 64;

// The body as a JSON object: 400 for malformed JSON or JSON nested deeper than kMaxJsonDepth,
// 413 for a body over kMaxJsonBody, 422 for another JSON value.
nlohmann::json parse_json_object(const std::string& body);

// A1111's txt2img / img2img request (StableDiffusionProcessingTxt2Img's fields and defaults;
// img2img adds init_images, mask, denoising_strength, inpainting_mask_invert). Also takes
// "model" and override_settings {sd_model_checkpoint, CLIP_stop_at_last_layers, randn_source}.
JobSpec a1111_job(const nlohmann::json& body, bool img2img, const ModelDirectory& models,
                  const RequestDefaults& defaults);
// {images: [base64 PNG], parameters: {...}, info: "<json text with seeds, infotexts...>"};
// with include_init_images, the request's init_images are echoed in parameters.
nlohmann::json a1111_response(const JobInfo& job, const nlohmann::json& body);

// OpenAI's image generation request: prompt, n, size "WxH", response_format b64_json, model;
// also negative_prompt, steps, cfg_scale, seed, sampler.
JobSpec openai_job(const nlohmann::json& body, const ModelDirectory& models,
                   const RequestDefaults& defaults);
// {created, data: [{b64_json, revised_prompt, seed}]}.
nlohmann::json openai_response(const JobInfo& job);

// The server's job API: id, state, progress, eta, queue position, error, and when done the
// images (base64 PNG) with their seeds and parameters text.
nlohmann::json job_json(const JobInfo& job, bool with_images);

// A1111's /sdapi/v1/samplers and /sdapi/v1/schedulers lists.
nlohmann::json a1111_samplers();
nlohmann::json a1111_schedulers();
// An A1111 scheduler name -> diffuse's (default, karras, trailing); "" for automatic; throws
// ApiError 422 if unknown.
std::string scheduler_from_a1111(const std::string& name);

}  // namespace diffuse::server
