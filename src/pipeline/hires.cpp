#include "pipeline/hires.h"

#include <algorithm>
#include <cmath>

#include "ops/ops.h"

namespace diffuse::pipeline {

namespace {

struct Method {
  ops::ResizeMode mode;
  bool antialias;
};

// How each upscaler resizes (torch.nn.functional.interpolate's arguments, or PIL's filter).
Method method_of(const HiresUpscaler& up) {
  const std::string n = up.name;
  if (n == "latent") return {ops::ResizeMode::Bilinear, false};
  if (n == "latent-antialiased") return {ops::ResizeMode::Bilinear, true};
  if (n == "latent-bicubic") return {ops::ResizeMode::Bicubic, false};
  if (n == "latent-bicubic-antialiased") return {ops::ResizeMode::Bicubic, true};
  if (n == "latent-nearest" || n == "nearest") return {ops::ResizeMode::Nearest, false};
  if (n == "lanczos") return {ops::ResizeMode::Lanczos, true};
  DF_FAIL("hires upscaler '", n, "' has no resize method");
}

}  // namespace

const std::vector<HiresUpscaler>& hires_upscalers() {
  static const std::vector<HiresUpscaler> all = {
      {"latent", "Latent", true},
      {"latent-antialiased", "Latent (antialiased)", true},
      {"latent-bicubic", "Latent (bicubic)", true},
      {"latent-bicubic-antialiased", "Latent (bicubic antialiased)", true},
      {"latent-nearest", "Latent (nearest)", true},
      {"lanczos", "Lanczos", false},
      {"nearest", "Nearest", false},
  };
  return all;
}

const HiresUpscaler& find_hires_upscaler(const std::string& name) {
  std::string known;
  for (auto& u : hires_upscalers()) {
    if (name == u.name || name == u.a1111) return u;
    known += str(known.empty() ? "" : ", ", u.name);
  }
  DF_FAIL("unknown hires upscaler '", name, "' (one of: ", known, ")");
}

std::pair<int64_t, int64_t> hires_size(const HiresOptions& h, int64_t width, int64_t height,
                                       int64_t multiple) {
  int64_t w = h.width, ht = h.height;
  if (w == 0 && ht == 0) {
    DF_CHECK(std::isfinite(h.scale) && h.scale >= 1.0 && h.scale <= 8.0,
             "the hires scale must be between 1 and 8, got ", h.scale);
    w = int64_t(double(width) * h.scale);
    ht = int64_t(double(height) * h.scale);
  }
  DF_CHECK(w > 0 && ht > 0, "the hires size must give both a width and a height, got ", w, "x", ht);
  w = w / multiple * multiple;
  ht = ht / multiple * multiple;
  DF_CHECK(w > 0 && ht > 0, "the hires size ", h.width, "x", h.height, " is below ", multiple,
           " pixels, the smallest this model takes");
  return {w, ht};
}

Tensor upscale_latents(const Tensor& latents, const HiresUpscaler& up, int64_t h, int64_t w) {
  DF_CHECK(up.latent, "the hires upscaler '", up.name, "' works on images, not latents");
  const Method m = method_of(up);
  return ops::resize(latents, h, w, m.mode, m.antialias);
}

Tensor upscale_image(const Tensor& images, const HiresUpscaler& up, int64_t height, int64_t width) {
  DF_CHECK(!up.latent, "the hires upscaler '", up.name, "' works on latents, not images");
  const Method m = method_of(up);
  Tensor r = ops::resize(images, height, width, m.mode, m.antialias);
  float* p = r.data<float>();
  for (int64_t i = 0, n = r.numel(); i < n; ++i) p[i] = std::clamp(p[i], -1.0f, 1.0f);
  return r;
}

}  // namespace diffuse::pipeline
