#include "pipeline/image_tensor.h"

#include <algorithm>
#include <cmath>

namespace diffuse::pipeline {

Tensor image_to_tensor(const io::Image& img) {
  const int64_t h = img.height, w = img.width, c = img.channels;
  DF_CHECK(h > 0 && w > 0 && c >= 1 && c <= 4, "image_to_tensor: empty image");
  Tensor t = Tensor::empty({1, 3, h, w});
  float* p = t.data<float>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t ch = 0; ch < 3; ++ch) {
        const int64_t src = c >= 3 ? ch : 0;
        const float v = img.pixels[size_t((y * w + x) * c + src)] / 255.0f;
        p[(ch * h + y) * w + x] = v * 2.0f - 1.0f;
      }
  return t;
}

std::vector<io::Image> tensor_to_images(const Tensor& t_) {
  DF_CHECK(t_.dim() == 4 && t_.size(1) == 3, "tensor_to_images: expected [B, 3, H, W], got ",
           t_.desc());
  Tensor t = t_.to(DType::F32).contiguous();
  const int64_t b = t.size(0), h = t.size(2), w = t.size(3);
  const float* p = t.data<float>();
  std::vector<io::Image> out;
  for (int64_t i = 0; i < b; ++i) {
    io::Image img;
    img.width = int(w);
    img.height = int(h);
    img.channels = 3;
    img.pixels.resize(size_t(h * w * 3));
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t ch = 0; ch < 3; ++ch) {
          // (x / 2 + 0.5) clamped to [0, 1], then * 255 rounded, as diffusers' postprocess
          float v = p[((i * 3 + ch) * h + y) * w + x] * 0.5f + 0.5f;
          v = std::clamp(v, 0.0f, 1.0f);
          img.pixels[size_t((y * w + x) * 3 + ch)] = uint8_t(std::lround(v * 255.0f));
        }
    out.push_back(std::move(img));
  }
  return out;
}

Tensor mask_to_tensor(const io::Image& img) {
  const int64_t h = img.height, w = img.width, c = img.channels;
  Tensor t = Tensor::empty({1, 1, h, w});
  float* p = t.data<float>();
  const int64_t used = c == 4 || c == 2 ? c - 1 : c;  // ignore alpha
  for (int64_t i = 0; i < h * w; ++i) {
    float s = 0;
    for (int64_t ch = 0; ch < used; ++ch) s += img.pixels[size_t(i * c + ch)];
    p[i] = s / float(used) / 255.0f;
  }
  return t;
}

io::Image resize_nearest(const io::Image& img, int width, int height) {
  io::Image out;
  out.width = width;
  out.height = height;
  out.channels = img.channels;
  out.pixels.resize(size_t(width) * size_t(height) * size_t(img.channels));
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const int sy = int(int64_t(y) * img.height / height), sx = int(int64_t(x) * img.width / width);
      for (int ch = 0; ch < img.channels; ++ch)
        out.pixels[(size_t(y) * size_t(width) + size_t(x)) * size_t(img.channels) + size_t(ch)] =
            img.pixels[(size_t(sy) * size_t(img.width) + size_t(sx)) * size_t(img.channels) + size_t(ch)];
    }
  return out;
}

}  // namespace diffuse::pipeline
