// The generation parameters as text, in AUTOMATIC1111's "parameters" PNG chunk format, which
// A1111's and ComfyUI's PNG-info readers show.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace diffuse::pipeline {

struct ImageParameters {
  std::string prompt, negative_prompt;
  int64_t steps = 0;
  std::string sampler, scheduler;  // diffuse names (euler_a, karras)
  float cfg_scale = 0;
  int64_t seed = 0;
  int64_t width = 0, height = 0;
  std::string model;  // file name without folders and extension
  int64_t clip_skip = 1;
  std::optional<float> denoising_strength;
  std::string rng;  // "cpu" / "cuda"
  std::string refiner;  // the refiner's file name without folders and extension ("" = none)
  float refiner_switch_at = 0;
  // The hires fix (A1111's fields): upscale factor or size, second-pass steps (0: the first's),
  // upscaler (A1111's name), and sampler/prompts where they differ from the first pass's.
  bool hires = false;
  float hires_scale = 0;
  int64_t hires_width = 0, hires_height = 0;
  int64_t hires_steps = 0;
  std::string hires_upscaler, hires_sampler, hires_prompt, hires_negative_prompt;
};

// A1111's display name of a sampler ("euler_a" -> "Euler a"); the name itself if unknown.
std::string a1111_sampler_name(const std::string& sampler);
// diffuse's name of an A1111 sampler name ("Euler a" -> "euler_a", "DPM++ 2M Karras" ->
// dpmpp_2m with scheduler karras); false if unknown.
bool from_a1111_sampler_name(const std::string& a1111, std::string* sampler, std::string* scheduler);

std::string format_parameters(const ImageParameters& p);

}  // namespace diffuse::pipeline
