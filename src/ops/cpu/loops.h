// Elementwise loop machinery: walks a contiguous output together with up to two strided,
// broadcast inputs. Dims are collapsed where every operand is dense across them, so
// same-shape contiguous operands become one flat loop, a bias [C] over [B, L, C] becomes rows
// of C with the bias stride 1, and a bias [C, 1, 1] over [B, C, H, W] becomes rows of H*W with
// the bias stride 0. The innermost run is handed to a kernel with its per-input strides.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>

#include "core/parallel.h"
#include "core/tensor.h"

namespace diffuse::ops::cpu {

template <int N>
struct LoopLayout {
  Shape shape;                   // collapsed, outermost first; never empty
  std::array<Shape, N> strides;  // element strides per input (0 where broadcast)
};

// Strides of `t` seen as broadcast to `out` (right-aligned; 0 for stretched dims).
inline Shape broadcast_strides(const Tensor& t, const Shape& out) {
  Shape st(out.size(), 0);
  const size_t lead = out.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i)
    st[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return st;
}

template <int N>
LoopLayout<N> make_layout(const Shape& out, const std::array<Shape, N>& in_strides) {
  LoopLayout<N> l;
  // Walk from the innermost dim outwards, dropping size-1 dims and merging a dim into the
  // previous (inner) one when every input is dense across the pair.
  Shape shape;
  std::array<Shape, N> st;
  for (size_t i = out.size(); i-- > 0;) {
    if (out[i] == 1) continue;
    bool merge = !shape.empty();
    for (int k = 0; k < N && merge; ++k)
      merge = in_strides[size_t(k)][i] == st[size_t(k)].back() * shape.back();
    if (merge) {
      shape.back() *= out[i];
    } else {
      shape.push_back(out[i]);
      for (int k = 0; k < N; ++k) st[size_t(k)].push_back(in_strides[size_t(k)][i]);
    }
  }
  if (shape.empty()) {
    shape.push_back(1);
    for (int k = 0; k < N; ++k) st[size_t(k)].push_back(0);
  }
  std::reverse(shape.begin(), shape.end());
  for (int k = 0; k < N; ++k) std::reverse(st[size_t(k)].begin(), st[size_t(k)].end());
  l.shape = std::move(shape);
  l.strides = std::move(st);
  return l;
}

// Runs fn(out_ptr, in_ptrs, inner_strides, n) over runs of the innermost collapsed dim,
// in parallel. Long inner runs are split into chunks so a flat loop still uses every core.
template <int N, typename Fn>
void run_loop(const LoopLayout<N>& l, float* out, const std::array<const float*, N>& in, Fn fn) {
  const int64_t nd = int64_t(l.shape.size());
  const int64_t inner = l.shape.back();
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) rows *= l.shape[size_t(d)];
  if (rows * inner == 0) return;
  constexpr int64_t kChunk = 16384;
  const int64_t nchunk = (inner + kChunk - 1) / kChunk;
  const int64_t chunk = (inner + nchunk - 1) / nchunk;
  std::array<int64_t, N> inner_st;
  for (int k = 0; k < N; ++k) inner_st[size_t(k)] = l.strides[size_t(k)].back();
  const int64_t grain = std::max<int64_t>(1, 4096 / std::min(inner, chunk));
  parallel_for(rows * nchunk, grain, [&](int64_t begin, int64_t end) {
    int64_t cur_row = -1;
    std::array<int64_t, N> row_off{};
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t / nchunk, c = t % nchunk;
      if (r != cur_row) {
        cur_row = r;
        row_off.fill(0);
        int64_t rem = r;
        for (int64_t d = nd - 2; d >= 0; --d) {
          const int64_t idx = rem % l.shape[size_t(d)];
          rem /= l.shape[size_t(d)];
          for (int k = 0; k < N; ++k) row_off[size_t(k)] += idx * l.strides[size_t(k)][size_t(d)];
        }
      }
      const int64_t j0 = c * chunk, j1 = std::min(inner, j0 + chunk);
      std::array<const float*, N> p;
      for (int k = 0; k < N; ++k)
        p[size_t(k)] = in[size_t(k)] + row_off[size_t(k)] + j0 * inner_st[size_t(k)];
      fn(out + r * inner + j0, p, inner_st, j1 - j0);
    }
  });
}

// Unary map with a per-element functor; the contiguous case is a plain vectorizable loop.
template <typename F>
void map_unary(const Tensor& x, Tensor& out, F f) {
  const Shape& s = out.shape();
  auto layout = make_layout<1>(s, {broadcast_strides(x, s)});
  run_loop<1>(layout, out.data<float>(), {x.data<float>()},
              [&](float* o, const std::array<const float*, 1>& p, const std::array<int64_t, 1>& st,
                  int64_t n) {
                const float* a = p[0];
                if (st[0] == 1) {
                  for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
                } else {
                  for (int64_t i = 0; i < n; ++i) o[i] = f(a[i * st[0]]);
                }
              });
}

// Binary map with broadcasting; the common stride patterns get their own loops.
template <typename F>
void map_binary(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const Shape& s = out.shape();
  auto layout = make_layout<2>(s, {broadcast_strides(a, s), broadcast_strides(b, s)});
  run_loop<2>(layout, out.data<float>(), {a.data<float>(), b.data<float>()},
              [&](float* o, const std::array<const float*, 2>& p, const std::array<int64_t, 2>& st,
                  int64_t n) {
                const float* x = p[0];
                const float* y = p[1];
                if (st[0] == 1 && st[1] == 1) {
                  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
                } else if (st[0] == 1 && st[1] == 0) {
                  const float yv = y[0];
                  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
                } else if (st[0] == 0 && st[1] == 1) {
                  const float xv = x[0];
                  for (int64_t i = 0; i < n; ++i) o[i] = f(xv, y[i]);
                } else {
                  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i * st[0]], y[i * st[1]]);
                }
              });
}

}  // namespace diffuse::ops::cpu
