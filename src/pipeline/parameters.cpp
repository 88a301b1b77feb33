#include "pipeline/parameters.h"

#include <cstdio>
#include <utility>

namespace diffuse::pipeline {

namespace {

const std::pair<const char*, const char*> kNames[] = {
    {"euler", "Euler"},          {"euler_a", "Euler a"},     {"heun", "Heun"},
    {"lms", "LMS"},              {"dpm2", "DPM2"},           {"dpm2_a", "DPM2 a"},
    {"dpmpp_2m", "DPM++ 2M"},    {"dpmpp_2m_sde", "DPM++ 2M SDE"},
    {"dpmpp_2s", "DPM++ SDE"},   {"ddim", "DDIM"},           {"pndm", "PLMS"},
    {"unipc", "UniPC"},          {"deis", "DEIS"},           {"ddpm", "DDPM"},
    {"lcm", "LCM"},              {"tcd", "TCD"},
};

std::string fmt_float(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", double(v));
  return buf;
}

// A1111 quotes a field value holding a comma, colon or quote as a JSON string.
std::string quoted(const std::string& v) {
  if (v.find_first_of(",:\"") == std::string::npos) return v;
  std::string q = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') q += '\\';
    if (c == '\n') {
      q += "\\n";
      continue;
    }
    q += c;
  }
  return q + "\"";
}

}  // namespace

std::string a1111_sampler_name(const std::string& sampler) {
  for (auto& [ours, theirs] : kNames)
    if (sampler == ours) return theirs;
  return sampler;
}

bool from_a1111_sampler_name(const std::string& a1111, std::string* sampler, std::string* scheduler) {
  std::string name = a1111;
  *scheduler = "default";
  const std::string karras = " Karras";
  if (name.size() > karras.size() && name.compare(name.size() - karras.size(), karras.size(), karras) == 0) {
    name.resize(name.size() - karras.size());
    *scheduler = "karras";
  }
  for (auto& [ours, theirs] : kNames)
    if (name == theirs || name == ours) {
      *sampler = ours;
      return true;
    }
  return false;
}

std::string format_parameters(const ImageParameters& p) {
  std::string s = p.prompt + "\n";
  if (!p.negative_prompt.empty()) s += "Negative prompt: " + p.negative_prompt + "\n";
  s += "Steps: " + std::to_string(p.steps) + ", Sampler: " + a1111_sampler_name(p.sampler);
  if (p.scheduler == "karras") s += ", Schedule type: Karras";
  if (p.scheduler == "trailing") s += ", Schedule type: Trailing";
  s += ", CFG scale: " + fmt_float(p.cfg_scale) + ", Seed: " + std::to_string(p.seed) +
       ", Size: " + std::to_string(p.width) + "x" + std::to_string(p.height);
  if (!p.model.empty()) s += ", Model: " + p.model;
  if (p.denoising_strength) s += ", Denoising strength: " + fmt_float(*p.denoising_strength);
  if (p.clip_skip > 1) s += ", Clip skip: " + std::to_string(p.clip_skip);
  if (p.hires) {
    if (p.hires_width > 0)
      s += ", Hires resize: " + std::to_string(p.hires_width) + "x" + std::to_string(p.hires_height);
    else
      s += ", Hires upscale: " + fmt_float(p.hires_scale);
    if (p.hires_steps > 0) s += ", Hires steps: " + std::to_string(p.hires_steps);
    s += ", Hires upscaler: " + p.hires_upscaler;
    if (!p.hires_sampler.empty()) s += ", Hires sampler: " + a1111_sampler_name(p.hires_sampler);
    if (!p.hires_prompt.empty()) s += ", Hires prompt: " + quoted(p.hires_prompt);
    if (!p.hires_negative_prompt.empty())
      s += ", Hires negative prompt: " + quoted(p.hires_negative_prompt);
  }
  if (!p.refiner.empty())
    s += ", Refiner: " + p.refiner + ", Refiner switch at: " + fmt_float(p.refiner_switch_at);
  if (p.rng == "cpu") s += ", RNG: CPU";
  if (p.rng == "cuda") s += ", RNG: GPU";
  s += ", Version: diffuse 0.1.0";
  return s;
}

}  // namespace diffuse::pipeline
