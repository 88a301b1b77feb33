// Resizing of [B, C, H, W] tensors as torch.nn.functional.interpolate computes it
// (align_corners=False), and PIL's Lanczos: separable, one set of taps per output row/column.
#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

namespace {

constexpr double kPi = 3.14159265358979323846;

// The taps of one output index: input indices first .. first+weights.size()-1.
struct Taps {
  int64_t first = 0;
  std::vector<float> weights;
};

double cubic(double x, double a) {  // Keys' cubic convolution kernel
  x = std::fabs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

double sinc(double x) { return x == 0 ? 1.0 : std::sin(kPi * x) / (kPi * x); }

double filter(ResizeMode mode, double x) {
  switch (mode) {
    case ResizeMode::Bilinear: return std::max(0.0, 1.0 - std::fabs(x));
    case ResizeMode::Bicubic: return cubic(x, -0.5);  // PIL's (and torch's antialiased) kernel
    case ResizeMode::Lanczos: return std::fabs(x) < 3 ? sinc(x) * sinc(x / 3) : 0.0;
    case ResizeMode::Nearest: break;
  }
  return 0;
}

double support_of(ResizeMode mode) {
  switch (mode) {
    case ResizeMode::Bilinear: return 1;
    case ResizeMode::Bicubic: return 2;
    case ResizeMode::Lanczos: return 3;
    case ResizeMode::Nearest: break;
  }
  return 0;
}

// Antialiased taps (torch's _upsample_*_aa, PIL's resample): the kernel stretched by the
// downscale factor, clipped to the input and renormalised.
std::vector<Taps> antialiased_taps(int64_t in, int64_t out, ResizeMode mode) {
  const double scale = double(in) / double(out);
  const double support = support_of(mode) * std::max(scale, 1.0);
  const double inv = scale >= 1 ? 1.0 / scale : 1.0;
  std::vector<Taps> taps{size_t(out)};
  for (int64_t i = 0; i < out; ++i) {
    const double center = scale * (double(i) + 0.5);
    const int64_t lo = std::max<int64_t>(int64_t(center - support + 0.5), 0);
    const int64_t hi = std::min<int64_t>(int64_t(center + support + 0.5), in);
    std::vector<double> w;
    double total = 0;
    for (int64_t j = lo; j < hi; ++j) {
      w.push_back(filter(mode, (double(j) - center + 0.5) * inv));
      total += w.back();
    }
    Taps& t = taps[size_t(i)];
    t.first = lo;
    for (double v : w) t.weights.push_back(float(total != 0 ? v / total : v));
  }
  return taps;
}

// torch's plain modes (antialias=False): nearest, bilinear (clamped source), bicubic (a = -0.75,
// border indices clamped).
std::vector<Taps> plain_taps(int64_t in, int64_t out, ResizeMode mode) {
  const double scale = double(in) / double(out);
  std::vector<Taps> taps{size_t(out)};
  for (int64_t i = 0; i < out; ++i) {
    Taps& t = taps[size_t(i)];
    if (mode == ResizeMode::Nearest) {
      t.first = std::min<int64_t>(int64_t(std::floor(double(i) * scale)), in - 1);
      t.weights = {1.0f};
      continue;
    }
    double src = scale * (double(i) + 0.5) - 0.5;
    if (mode == ResizeMode::Bilinear) {
      src = std::max(src, 0.0);
      const int64_t i0 = std::min<int64_t>(int64_t(src), in - 1);
      const double l = i0 + 1 < in ? src - double(i0) : 0.0;
      t.first = i0;
      t.weights = {float(1 - l)};
      if (i0 + 1 < in) t.weights.push_back(float(l));
      continue;
    }
    // bicubic: four taps around floor(src), indices clamped to the input (so taps may repeat:
    // they are expanded into a contiguous run here)
    const int64_t f = int64_t(std::floor(src));
    const double frac = src - double(f);
    const int64_t lo = std::max<int64_t>(f - 1, 0), hi = std::min<int64_t>(f + 2, in - 1);
    t.first = lo;
    t.weights.assign(size_t(hi - lo + 1), 0.0f);
    for (int k = -1; k <= 2; ++k) {
      const int64_t j = std::clamp<int64_t>(f + k, 0, in - 1);
      t.weights[size_t(j - lo)] += float(cubic(double(k) - frac, -0.75));
    }
  }
  return taps;
}

}  // namespace

Tensor resize(const Tensor& x, int64_t height, int64_t width, ResizeMode mode, bool antialias) {
  check_f32(x, "resize", "x");
  DF_CHECK(x.dim() == 4, "resize: input must be [B, C, H, W], got ", x.desc());
  DF_CHECK(height > 0 && width > 0, "resize: output size ", width, "x", height, " is empty");
  DF_CHECK(mode != ResizeMode::Lanczos || antialias, "resize: Lanczos is always antialiased");
  const Shape& s = x.shape();
  const int64_t planes = s[0] * s[1], H = s[2], W = s[3];
  DF_CHECK(H > 0 && W > 0, "resize: input ", x.desc(), " is empty");
  const bool aa = antialias && mode != ResizeMode::Nearest;
  const auto rows = aa ? antialiased_taps(H, height, mode) : plain_taps(H, height, mode);
  const auto cols = aa ? antialiased_taps(W, width, mode) : plain_taps(W, width, mode);
  ProfileScope prof("resize");
  const Tensor in = x.contiguous();
  Tensor mid = Tensor::empty({s[0], s[1], H, width});  // horizontal pass: b c H W -> b c H w
  Tensor out = Tensor::empty({s[0], s[1], height, width});
  const float* src = in.data<float>();
  float* m = mid.data<float>();
  float* dst = out.data<float>();
  parallel_for(planes * H, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < width; ++j) {
        const Taps& t = cols[size_t(j)];
        const float* p = src + r * W + t.first;
        float acc = 0;
        for (size_t k = 0; k < t.weights.size(); ++k) acc += t.weights[k] * p[k];
        m[r * width + j] = acc;
      }
  });
  parallel_for(planes * height, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t plane = r / height, i = r % height;
      const Taps& t = rows[size_t(i)];
      float* o = dst + r * width;
      std::fill(o, o + width, 0.0f);
      for (size_t k = 0; k < t.weights.size(); ++k) {
        const float* p = m + (plane * H + t.first + int64_t(k)) * width;
        for (int64_t j = 0; j < width; ++j) o[j] += t.weights[k] * p[j];
      }
    }
  });
  return out;
}

}  // namespace diffuse::ops
