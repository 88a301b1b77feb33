// Layer norm (over the last dim) and group norm (over channel groups and space). Statistics are
// two-pass (mean, then squared deviations) in double. The mean is split into a float head and
// tail, so x - mean is formed in float to about one rounding even when the values share a large
// offset; then y = (x - mean) * (rstd * weight) + bias.
#include <cmath>

#include "core/parallel.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/reduce.h"
#include "ops/cpu/vec_math.h"

namespace diffuse::ops::cpu {

namespace {

// mean = hi + lo, both floats; (x - hi) is exact for x near the mean.
struct SplitMean {
  float hi, lo;
  explicit SplitMean(double m) : hi(float(m)), lo(float(m - double(float(m)))) {}
  float center(float x) const { return (x - hi) - lo; }
};

}  // namespace

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
  const int64_t d = x.shape().back();
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(d, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const float* xr = xp + r * d;
                   float* o = op + r * d;
                   const double mean = row_sum(xr, d) / double(d);
                   const double var = row_sq_dev(xr, d, mean) / double(d);
                   const double rstd = 1.0 / std::sqrt(var + double(eps));
                   const float a = float(rstd);
                   const SplitMean m(mean);
                   if (w && b) {
                     for (int64_t i = 0; i < d; ++i) o[i] = m.center(xr[i]) * a * w[i] + b[i];
                   } else if (w) {
                     for (int64_t i = 0; i < d; ++i) o[i] = m.center(xr[i]) * a * w[i];
                   } else if (b) {
                     for (int64_t i = 0; i < d; ++i) o[i] = m.center(xr[i]) * a + b[i];
                   } else {
                     for (int64_t i = 0; i < d; ++i) o[i] = m.center(xr[i]) * a;
                   }
                 }
               });
}

void group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                float eps, bool silu, Tensor& out) {
  const int64_t batch = x.shape()[0], channels = x.shape()[1];
  const int64_t spatial = channels == 0 || batch == 0 ? 0 : x.numel() / (batch * channels);
  const int64_t cpg = channels / groups;  // channels per group
  const int64_t group_size = cpg * spatial;
  if (group_size == 0) return;
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  parallel_for(batch * groups, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t % groups;
      const float* xg = xp + t * group_size;  // [B, C, S] -> [B*G, cpg * S]
      float* og = op + t * group_size;
      const double mean = row_sum(xg, group_size) / double(group_size);
      const double var = row_sq_dev(xg, group_size, mean) / double(group_size);
      const double rstd = 1.0 / std::sqrt(var + double(eps));
      const SplitMean m(mean);
      for (int64_t c = 0; c < cpg; ++c) {
        const int64_t ch = g * cpg + c;
        const double scale_c = rstd * (w ? double(w[ch]) : 1.0);
        const float a = float(scale_c);
        const float shift = b ? b[ch] : 0.f;
        const float* xc = xg + c * spatial;
        float* oc = og + c * spatial;
        for (int64_t i = 0; i < spatial; ++i) oc[i] = m.center(xc[i]) * a + shift;
        if (silu)
          for (int64_t i = 0; i < spatial; ++i) oc[i] = silu_f(oc[i]);
      }
    }
  });
}

}  // namespace diffuse::ops::cpu
