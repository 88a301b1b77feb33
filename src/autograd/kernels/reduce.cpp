// Sums of a tensor down to a broadcast-compatible shape (the backward of broadcasting), in
// double, split over the kept elements so every output is summed by one thread in a fixed order.
#include <algorithm>

#include "autograd/kernels/kernels.h"
#include "core/parallel.h"
#include "ops/ops.h"

namespace diffuse::autograd::kernels {

namespace {

// x's dims, size-1 dims dropped and neighbours of the same kind (summed or kept) merged.
struct Groups {
  Shape size;
  std::vector<bool> summed;
  Shape stride;  // element stride of each group in the contiguous x
};

Groups collapse(const Shape& xs, const Shape& ts) {
  Groups g;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i] == 1) continue;
    const bool summed = ts[i] == 1;
    if (!g.size.empty() && g.summed.back() == summed) {
      g.size.back() *= xs[i];
    } else {
      g.size.push_back(xs[i]);
      g.summed.push_back(summed);
    }
  }
  g.stride.assign(g.size.size(), 1);
  for (size_t i = g.size.size(); i-- > 1;) g.stride[i - 1] = g.stride[i] * g.size[i];
  return g;
}

// Offsets (in x) of every combination of the listed groups, row-major.
std::vector<int64_t> offsets(const Groups& g, const std::vector<size_t>& which) {
  std::vector<int64_t> out{0};
  for (size_t k : which) {
    std::vector<int64_t> next;
    next.reserve(out.size() * size_t(g.size[k]));
    for (int64_t base : out)
      for (int64_t i = 0; i < g.size[k]; ++i) next.push_back(base + i * g.stride[k]);
    out.swap(next);
  }
  return out;
}

}  // namespace

Tensor sum_to(const Tensor& x_, const Shape& shape) {
  if (x_.shape() == shape) return x_;
  const Tensor x = x_.contiguous();
  const Shape& xs = x.shape();
  Shape ts(xs.size(), 1);  // target right-aligned, padded with 1s
  for (size_t i = 0; i < shape.size(); ++i) ts[xs.size() - shape.size() + i] = shape[i];
  Tensor out = Tensor::zeros(shape);
  if (x.numel() == 0 || out.numel() == 0) return out;
  const Groups g = collapse(xs, ts);
  const float* px = x.data<float>();
  float* po = out.data<float>();
  if (g.size.empty()) {  // a single element
    po[0] = px[0];
    return out;
  }
  const size_t last = g.size.size() - 1;
  std::vector<size_t> kept, summed;
  for (size_t i = 0; i < g.size.size(); ++i) (g.summed[i] ? summed : kept).push_back(i);
  if (g.summed[last]) {
    // Each output sums whole contiguous runs of the innermost group.
    const int64_t run = g.size[last];
    summed.pop_back();
    const std::vector<int64_t> koff = offsets(g, kept), roff = offsets(g, summed);
    parallel_for(int64_t(koff.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        double acc = 0;
        for (int64_t r : roff) {
          const float* p = px + koff[size_t(o)] + r;
          double part[8] = {};
          int64_t j = 0;
          for (; j + 8 <= run; j += 8)
            for (int l = 0; l < 8; ++l) part[l] += double(p[j + l]);
          for (; j < run; ++j) acc += double(p[j]);
          for (int l = 0; l < 8; ++l) acc += part[l];
        }
        po[o] = float(acc);
      }
    });
    return out;
  }
  // The innermost group is kept: outputs are rows of `cols`, each row summed over the others.
  const int64_t cols = g.size[last];
  kept.pop_back();
  const std::vector<int64_t> koff = offsets(g, kept), roff = offsets(g, summed);
  constexpr int64_t kBlock = 256;
  const int64_t nblk = (cols + kBlock - 1) / kBlock;
  parallel_for(int64_t(koff.size()) * nblk, 1, [&](int64_t b, int64_t e) {
    std::vector<double> acc(static_cast<size_t>(kBlock));
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / nblk, c0 = (t % nblk) * kBlock, c1 = std::min(cols, c0 + kBlock);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t r : roff) {
        const float* p = px + koff[size_t(o)] + r;
        for (int64_t c = c0; c < c1; ++c) acc[size_t(c - c0)] += double(p[c]);
      }
      for (int64_t c = c0; c < c1; ++c) po[o * cols + c] = float(acc[size_t(c - c0)]);
    }
  });
  return out;
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  return ops::add(Tensor::zeros(shape), x);
}

}  // namespace diffuse::autograd::kernels
