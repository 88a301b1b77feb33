// Backward kernels of layer norm, group norm (plain and fused with SiLU) and softmax. Statistics
// are recomputed from the saved input, in double, as the forward kernels compute them.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/kernels/kernels.h"
#include "core/parallel.h"

namespace diffuse::autograd::kernels {

namespace {

struct Stats {
  double mean, rstd;
};

Stats stats(const float* x, int64_t n, float eps) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]);
  const double mean = s / double(n);
  double v = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(x[i]) - mean;
    v += d * d;
  }
  return {mean, 1.0 / std::sqrt(v / double(n) + double(eps))};
}

// The weight and bias gradients [d] from per-part sums dw, db [parts, d], added in part order
// (deterministic whatever the threads).
void sum_parts(const std::vector<double>& dw, const std::vector<double>& db, int64_t parts,
               int64_t d, NormGrads& r) {
  r.dweight = Tensor::empty({d});
  r.dbias = Tensor::empty({d});
  for (int64_t i = 0; i < d; ++i) {
    double a = 0, b = 0;
    for (int64_t p = 0; p < parts; ++p) {
      a += dw[size_t(p * d + i)];
      b += db[size_t(p * d + i)];
    }
    r.dweight.data<float>()[i] = float(a);
    r.dbias.data<float>()[i] = float(b);
  }
}

}  // namespace

NormGrads layer_norm_backward(const Tensor& x_, const Tensor& weight, float eps, const Tensor& g_,
                              bool need_dx, bool need_params) {
  const Tensor x = x_.contiguous(), g = g_.contiguous();
  const int64_t d = x.shape().back(), rows = d ? x.numel() / d : 0;
  const Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  const float* px = x.data<float>();
  const float* pg = g.data<float>();
  const float* pw = w.defined() ? w.data<float>() : nullptr;
  NormGrads r;
  if (need_dx) r.dx = Tensor::empty(x.shape());
  float* pdx = need_dx ? r.dx.data<float>() : nullptr;
  // Parameter sums per fixed chunk of rows, added in chunk order: deterministic.
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(rows, 64));
  std::vector<double> dw(need_params ? size_t(chunks * d) : 0), db(dw.size());
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    std::vector<double> xhat(static_cast<size_t>(d));
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
      for (int64_t row = r0; row < r1; ++row) {
        const float* xr = px + row * d;
        const float* gr = pg + row * d;
        const Stats st = stats(xr, d, eps);
        double s1 = 0, s2 = 0;  // sums of dxhat and dxhat * xhat
        for (int64_t i = 0; i < d; ++i) {
          xhat[size_t(i)] = (double(xr[i]) - st.mean) * st.rstd;
          const double dxh = double(gr[i]) * (pw ? double(pw[i]) : 1.0);
          s1 += dxh;
          s2 += dxh * xhat[size_t(i)];
          if (need_params) {
            dw[size_t(c * d + i)] += double(gr[i]) * xhat[size_t(i)];
            db[size_t(c * d + i)] += double(gr[i]);
          }
        }
        if (need_dx) {
          const double m1 = s1 / double(d), m2 = s2 / double(d);
          for (int64_t i = 0; i < d; ++i) {
            const double dxh = double(gr[i]) * (pw ? double(pw[i]) : 1.0);
            pdx[row * d + i] = float(st.rstd * (dxh - m1 - xhat[size_t(i)] * m2));
          }
        }
      }
    }
  });
  if (need_params) sum_parts(dw, db, chunks, d, r);
  return r;
}

NormGrads group_norm_backward(const Tensor& x_, int64_t groups, const Tensor& weight,
                              const Tensor& bias, float eps, bool silu, const Tensor& g_,
                              bool need_dx, bool need_params) {
  const Tensor x = x_.contiguous(), g = g_.contiguous();
  const int64_t b = x.shape()[0], c = x.shape()[1];
  const int64_t s = c ? x.numel() / (b * c) : 0, cg = c / groups, n = cg * s;
  const Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  const Tensor bi = bias.defined() ? bias.contiguous() : Tensor();
  const float* px = x.data<float>();
  const float* pg = g.data<float>();
  const float* pw = w.defined() ? w.data<float>() : nullptr;
  const float* pb = bi.defined() ? bi.data<float>() : nullptr;
  // dx holds the gradient at the affine output (after SiLU's derivative) until the last pass.
  Tensor gy = Tensor::empty(x.shape());
  float* pgy = gy.data<float>();
  std::vector<double> dw(size_t(b * c)), db(size_t(b * c));  // per batch entry, summed after
  parallel_for(b * groups, 1, [&](int64_t jb, int64_t je) {
    for (int64_t j = jb; j < je; ++j) {
      const int64_t bi_ = j / groups, gi = j % groups;
      const int64_t off = (bi_ * c + gi * cg) * s;
      const Stats st = stats(px + off, n, eps);
      double s1 = 0, s2 = 0;  // sums of dxhat and dxhat * xhat over the group
      for (int64_t ch = 0; ch < cg; ++ch) {
        const int64_t cc = gi * cg + ch;
        const double wc = pw ? double(pw[cc]) : 1.0, bc = pb ? double(pb[cc]) : 0.0;
        double sg = 0, sgx = 0;
        for (int64_t i = 0; i < s; ++i) {
          const int64_t k = off + ch * s + i;
          const double xh = (double(px[k]) - st.mean) * st.rstd;
          double gv = double(pg[k]);
          if (silu) {
            const double y = xh * wc + bc;
            const double sig = 1.0 / (1.0 + std::exp(-y));
            gv *= sig * (1.0 + y * (1.0 - sig));
          }
          pgy[k] = float(gv);
          sg += gv;
          sgx += gv * xh;
        }
        dw[size_t(bi_ * c + cc)] = sgx;
        db[size_t(bi_ * c + cc)] = sg;
        s1 += sg * wc;
        s2 += sgx * wc;
      }
      if (!need_dx) continue;
      const double m1 = s1 / double(n), m2 = s2 / double(n);
      for (int64_t ch = 0; ch < cg; ++ch) {
        const int64_t cc = gi * cg + ch;
        const double wc = pw ? double(pw[cc]) : 1.0;
        for (int64_t i = 0; i < s; ++i) {
          const int64_t k = off + ch * s + i;
          const double xh = (double(px[k]) - st.mean) * st.rstd;
          pgy[k] = float(st.rstd * (double(pgy[k]) * wc - m1 - xh * m2));
        }
      }
    }
  });
  NormGrads r;
  if (need_dx) r.dx = gy;
  if (need_params) sum_parts(dw, db, b, c, r);
  return r;
}

Tensor softmax_backward(const Tensor& y_, const Tensor& g_) {
  const Tensor y = y_.contiguous(), g = g_.contiguous();
  const int64_t d = y.shape().back(), rows = d ? y.numel() / d : 0;
  Tensor out = Tensor::empty(y.shape());
  const float* py = y.data<float>();
  const float* pg = g.data<float>();
  float* po = out.data<float>();
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(d, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t r = b; r < e; ++r) {
                   const float* yr = py + r * d;
                   const float* gr = pg + r * d;
                   double dot = 0;
                   for (int64_t i = 0; i < d; ++i) dot += double(yr[i]) * double(gr[i]);
                   const float fd = float(dot);
                   for (int64_t i = 0; i < d; ++i) po[r * d + i] = yr[i] * (gr[i] - fd);
                 }
               });
  return out;
}

Tensor log_softmax(const Tensor& x_) {
  const Tensor x = x_.contiguous();
  const int64_t d = x.shape().back(), rows = d ? x.numel() / d : 0;
  Tensor out = Tensor::empty(x.shape());
  const float* px = x.data<float>();
  float* po = out.data<float>();
  parallel_for(rows, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = px + r * d;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < d; ++i) m = std::max(m, xr[i]);
      double s = 0;
      for (int64_t i = 0; i < d; ++i) s += std::exp(double(xr[i]) - double(m));
      const double lse = double(m) + std::log(s);
      for (int64_t i = 0; i < d; ++i) po[r * d + i] = float(double(xr[i]) - lse);
    }
  });
  return out;
}

Tensor log_softmax_backward(const Tensor& y_, const Tensor& g_) {
  const Tensor y = y_.contiguous(), g = g_.contiguous();
  const int64_t d = y.shape().back(), rows = d ? y.numel() / d : 0;
  Tensor out = Tensor::empty(y.shape());
  const float* py = y.data<float>();
  const float* pg = g.data<float>();
  float* po = out.data<float>();
  parallel_for(rows, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      double sg = 0;
      for (int64_t i = 0; i < d; ++i) sg += double(pg[r * d + i]);
      for (int64_t i = 0; i < d; ++i)
        po[r * d + i] = float(double(pg[r * d + i]) - std::exp(double(py[r * d + i])) * sg);
    }
  });
  return out;
}

void causal_mask_inplace(Tensor& scores) {
  const int64_t n = scores.shape()[0], lq = scores.shape()[1], lk = scores.shape()[2];
  float* p = scores.data<float>();
  const float ninf = -std::numeric_limits<float>::infinity();
  parallel_for(n * lq, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t i = r % lq;
      for (int64_t j = i + 1; j < lk; ++j) p[r * lk + j] = ninf;
    }
  });
}

}  // namespace diffuse::autograd::kernels
