// Scaled dot-product attention with bf16 products (f32 accumulation), for the bf16 precision
// scope. q is rounded to bf16 rows; each head's K^T and V are rounded and packed once into
// the layout of oneDNN's matmul (brgemm) weights. Then per (batch, head, block of queries),
// with only a block x Lk score matrix per thread: S = Q_blk K^T (f32), P = exp(scale (S -
// rowmax)) rounded to bf16 with the row sums kept in f32, O_blk = (P V) / rowsum. Causal: key j
// of query i is masked when j > i.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "core/parallel.h"
#include "ops/cpu/dnnl_util.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/reduce.h"
#include "ops/cpu/vec_math.h"

namespace diffuse::ops::cpu {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
constexpr auto kBf16 = memory::data_type::bf16;
constexpr auto kF32 = memory::data_type::f32;

struct Prim {
  dnnl::primitive prim;
  memory::desc a, b, c, scratch;
};

PrimitiveCache<Prim>& prim_cache() {
  static PrimitiveCache<Prim> cache;
  return cache;
}

void append_md(DnnlKey& key, const memory::desc& md) {
  const auto& blk = md.data.format_desc.blocking;
  key.push_back(md.data.ndims);
  key.insert(key.end(), md.data.dims, md.data.dims + md.data.ndims);
  key.insert(key.end(), blk.strides, blk.strides + md.data.ndims);
  key.push_back(blk.inner_nblks);
  key.insert(key.end(), blk.inner_blks, blk.inner_blks + blk.inner_nblks);
  key.insert(key.end(), blk.inner_idxs, blk.inner_idxs + blk.inner_nblks);
  key.push_back(int64_t(md.data.data_type));
}

// matmul C [m, n] f32 = A [m, k] bf16 (rows of stride lda) x B, B in layout `b` (or `any`).
Prim matmul_prim(int64_t m, int64_t n, int64_t k, int64_t lda, const memory::desc& b, int64_t ldc) {
  DnnlKey key{0, m, n, k, lda, ldc};
  append_md(key, b);
  return prim_cache().get(key, [&] {
    Prim r;
    r.a = memory::desc({m, k}, kBf16, memory::dims{lda, 1});
    r.c = memory::desc({m, n}, kF32, memory::dims{ldc, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(r.a, b, r.c), dnnl_attr(), dnnl_engine());
    r.prim = dnnl::matmul(pd);
    r.b = pd.weights_desc();
    r.scratch = pd.scratchpad_desc();
    return r;
  });
}

Prim reorder_prim(const memory::desc& from, const memory::desc& to) {
  DnnlKey key{1};
  append_md(key, from);
  append_md(key, to);
  return prim_cache().get(key, [&] {
    Prim r;
    dnnl::reorder::primitive_desc pd(dnnl_engine(), from, dnnl_engine(), to, dnnl_attr());
    r.prim = dnnl::reorder(pd);
    r.a = from;
    r.b = to;
    r.scratch = pd.scratchpad_desc();
    return r;
  });
}

// t [B, H, L, D] (unit stride in D) -> contiguous bf16 [B, H, L, D]
Tensor to_bf16_rows(const Tensor& t) {
  const int64_t B = t.shape()[0], H = t.shape()[1], L = t.shape()[2], D = t.shape()[3];
  Tensor out = Tensor::empty(t.shape(), DType::BF16);
  const float* src = t.data<float>();
  uint16_t* dst = static_cast<uint16_t*>(out.raw_data());
  const auto& st = t.strides();
  parallel_for(B * H * L, std::max<int64_t>(1, 4096 / std::max<int64_t>(D, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const int64_t b = r / (H * L), h = (r / L) % H, l = r % L;
                   f32_to_bf16_serial(src + b * st[0] + h * st[1] + l * st[2], dst + r * D, D);
                 }
               });
  return out;
}

#if defined(__AVX512F__) && defined(__AVX512BF16__)
// GCC 12 flags the intrinsics' internal _mm512_undefined_ps() as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// exp(x) for x <= 0 (Cephes' polynomial on |r| <= ln2/2, relative error ~1e-7), via scalef.
inline __m512 exp_neg(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(y, n);
}
#endif

// p[i] = bf16(exp(scale (s[i] - max s))) for i < valid, 0 up to n; returns 1 / sum of the
// exponentials (0 for an empty row). scale > 0.
float softmax_row_bf16(const float* s, uint16_t* p, int64_t valid, int64_t n, float scale) {
  if (valid == 0) {
    std::fill(p, p + n, uint16_t(0));
    return 0.f;
  }
  const float m = row_max(s, valid);
  int64_t i = 0;
  float sum = 0;
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  const __m512 vm = _mm512_set1_ps(m), vs = _mm512_set1_ps(scale);
  __m512 acc = _mm512_setzero_ps();
  for (; i + 32 <= valid; i += 32) {
    const __m512 e0 = exp_neg(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(s + i), vm), vs));
    const __m512 e1 = exp_neg(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(s + i + 16), vm), vs));
    acc = _mm512_add_ps(acc, _mm512_add_ps(e0, e1));
    _mm512_storeu_si512(reinterpret_cast<void*>(p + i),
                        reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(e1, e0)));
  }
  for (; i < valid; i += 16) {  // the tail, 16 at a time under a mask
    const int64_t left = std::min<int64_t>(16, valid - i);
    const __mmask16 mask = __mmask16((1u << left) - 1u);
    const __m512 x = _mm512_maskz_loadu_ps(mask, s + i);
    const __m512 e = _mm512_maskz_mov_ps(mask, exp_neg(_mm512_mul_ps(_mm512_sub_ps(x, vm), vs)));
    acc = _mm512_add_ps(acc, e);
    _mm256_mask_storeu_epi16(p + i, mask, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(e)));
  }
  sum = _mm512_reduce_add_ps(acc);
#endif
  for (; i < valid; ++i) {
    const float e = exp_f((s[i] - m) * scale);
    const uint16_t b = uint16_t(std::bit_cast<uint32_t>(e) >> 16);  // e > 0: round below
    const float be = std::bit_cast<float>(uint32_t(b) << 16);
    const float rem = e - be, up = std::bit_cast<float>(uint32_t(b + 1) << 16) - e;
    p[i] = rem > up || (rem == up && (b & 1)) ? uint16_t(b + 1) : b;
    sum += e;
  }
  std::fill(p + valid, p + n, uint16_t(0));
  return 1.f / sum;
}

}  // namespace

Status attention_bf16(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                      Tensor& out) {
  const int64_t B = q.shape()[0], H = q.shape()[1], Lq = q.shape()[2], Dh = q.shape()[3];
  const int64_t Lk = k.shape()[2], Dv = v.shape()[3], BH = B * H;
  if (BH * Lq == 0) return {};
  if (!(scale > 0.f)) return attention(q, k, v, scale, causal, out);
  // Query block: about 512 KiB of f32 scores per thread (32 rows at Lk = 4096), 16 to 256 rows.
  const int64_t bq = std::min(Lq, std::clamp<int64_t>(131072 / Lk, 16, 256));
  const int64_t nblk = (Lq + bq - 1) / bq;
  std::mutex mu;
  Status status;
  auto fail = [&](const std::exception& e) {
    std::lock_guard<std::mutex> lock(mu);
    if (status.empty()) status = str("bf16 attention failed (", e.what(), ")");
  };
  try {
    // The full-block products fix the packed layouts of K^T [Dh, Lk] and V [Lk, Dv].
    const Prim qk = matmul_prim(bq, Lk, Dh, Dh, memory::desc({Dh, Lk}, kBf16, tag::any), Lk);
    const Prim pv = matmul_prim(bq, Dv, Lk, Lk, memory::desc({Lk, Dv}, kBf16, tag::any), Dv);
    const size_t kbytes = qk.b.get_size(), vbytes = pv.b.get_size();
    Tensor qb = to_bf16_rows(q);
    Tensor kpack = Tensor::empty({BH * int64_t(kbytes)}, DType::U8);
    Tensor vpack = Tensor::empty({BH * int64_t(vbytes)}, DType::U8);
    const auto& ks = k.strides();
    const auto& vs = v.strides();
    const Prim kre = reorder_prim(memory::desc({Dh, Lk}, kF32, memory::dims{ks[3], ks[2]}), qk.b);
    const Prim vre = reorder_prim(memory::desc({Lk, Dv}, kF32, memory::dims{vs[2], vs[3]}), pv.b);
    char* kp = static_cast<char*>(kpack.raw_data());
    char* vp = static_cast<char*>(vpack.raw_data());
    parallel_for(BH, 1, [&](int64_t i0, int64_t i1) {
      try {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t b = i / H, h = i % H;
          dnnl_execute(kre.prim, kre.scratch,
                       {{DNNL_ARG_FROM, dnnl_wrap(kre.a, k.data<float>() + b * ks[0] + h * ks[1])},
                        {DNNL_ARG_TO, dnnl_wrap(kre.b, kp + i * int64_t(kbytes))}});
          dnnl_execute(vre.prim, vre.scratch,
                       {{DNNL_ARG_FROM, dnnl_wrap(vre.a, v.data<float>() + b * vs[0] + h * vs[1])},
                        {DNNL_ARG_TO, dnnl_wrap(vre.b, vp + i * int64_t(vbytes))}});
        }
      } catch (const std::exception& e) {
        fail(e);
      }
    });
    if (!status.empty()) return status;
    const uint16_t* qp = static_cast<const uint16_t*>(qb.raw_data());
    float* op = out.data<float>();
    parallel_for(BH * nblk, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> s(size_t(bq * Lk));
      std::vector<uint16_t> p(size_t(bq * Lk));
      std::vector<float> inv(static_cast<size_t>(bq));
      try {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t bh = t / nblk, blk = t % nblk;
          const int64_t q0 = blk * bq, nq = std::min(bq, Lq - q0);
          const Prim& qk_n = nq == bq ? qk : matmul_prim(nq, Lk, Dh, Dh, qk.b, Lk);
          const Prim& pv_n = nq == bq ? pv : matmul_prim(nq, Dv, Lk, Lk, pv.b, Dv);
          float* ob = op + (bh * Lq + q0) * Dv;
          dnnl_execute(qk_n.prim, qk_n.scratch,
                       {{DNNL_ARG_SRC, dnnl_wrap(qk_n.a, qp + (bh * Lq + q0) * Dh)},
                        {DNNL_ARG_WEIGHTS, dnnl_wrap(qk_n.b, kp + bh * int64_t(kbytes))},
                        {DNNL_ARG_DST, dnnl_wrap(qk_n.c, s.data())}});
          for (int64_t r = 0; r < nq; ++r) {
            const int64_t valid = causal ? std::min(Lk, q0 + r + 1) : Lk;
            inv[size_t(r)] =
                softmax_row_bf16(s.data() + r * Lk, p.data() + r * Lk, valid, Lk, scale);
          }
          dnnl_execute(pv_n.prim, pv_n.scratch,
                       {{DNNL_ARG_SRC, dnnl_wrap(pv_n.a, p.data())},
                        {DNNL_ARG_WEIGHTS, dnnl_wrap(pv_n.b, vp + bh * int64_t(vbytes))},
                        {DNNL_ARG_DST, dnnl_wrap(pv_n.c, ob)}});
          for (int64_t r = 0; r < nq; ++r) {
            const float f = inv[size_t(r)];
            for (int64_t j = 0; j < Dv; ++j) ob[r * Dv + j] *= f;
          }
        }
      } catch (const std::exception& e) {
        fail(e);
      }
    });
  } catch (const std::exception& e) {
    fail(e);
  }
  return status;
}

}  // namespace diffuse::ops::cpu
