// Matrix products through oneDNN: the matmul primitive (cached per shape and strides) for
// linear/matmul, and dnnl_sgemm for the small blocked products inside attention.
#include "ops/cpu/dnnl_util.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/weight_cache.h"
#include "ops/profile.h"

namespace diffuse::ops::cpu {

namespace {

struct MatmulEntry {
  dnnl::matmul prim;
  dnnl::memory::desc src, weights, bias, dst, scratch;
};

PrimitiveCache<MatmulEntry>& matmul_cache() {
  static PrimitiveCache<MatmulEntry> cache;
  return cache;
}

void append(DnnlKey& key, const dnnl::memory::desc& md) {
  const dnnl::memory::dims dims = md.dims();
  key.push_back(int64_t(dims.size()));
  key.insert(key.end(), dims.begin(), dims.end());
  const auto& blk = md.data.format_desc.blocking;
  key.insert(key.end(), blk.strides, blk.strides + dims.size());
}

}  // namespace

Status matmul(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out) {
  try {
    const dnnl::memory::desc src = dnnl_desc(a.shape(), a.strides());
    const dnnl::memory::desc wei = dnnl_desc(b.shape(), b.strides());
    const dnnl::memory::desc dst = dnnl_desc(out.shape(), out.strides());
    dnnl::memory::desc bmd;
    if (bias.defined()) {
      // bias [N] -> [1, ..., 1, N]
      Shape bs(out.shape().size(), 1);
      bs.back() = bias.numel();
      bmd = dnnl_desc(bs, contiguous_strides(bs));
    }
    DnnlKey key;
    append(key, src);
    append(key, wei);
    append(key, dst);
    key.push_back(bias.defined() ? 1 : 0);
    MatmulEntry e = matmul_cache().get(key, [&] {
      MatmulEntry n;
      dnnl::matmul::desc d = bias.defined() ? dnnl::matmul::desc(src, wei, bmd, dst)
                                            : dnnl::matmul::desc(src, wei, dst);
      dnnl::matmul::primitive_desc pd(d, dnnl_attr(), dnnl_engine());
      n.prim = dnnl::matmul(pd);
      n.src = src;
      n.weights = wei;
      n.bias = bmd;
      n.dst = dst;
      n.scratch = pd.scratchpad_desc();
      return n;
    });
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl_wrap(e.src, a.raw_data())},
        {DNNL_ARG_WEIGHTS, dnnl_wrap(e.weights, b.raw_data())},
        {DNNL_ARG_DST, dnnl_wrap(e.dst, out.raw_data())}};
    if (bias.defined()) args[DNNL_ARG_BIAS] = dnnl_wrap(e.bias, bias.raw_data());
    dnnl_execute(e.prim, e.scratch, std::move(args));
  } catch (const dnnl::error& err) {
    return str("oneDNN matmul failed (", err.what(), ") for ", a.desc(), " x ", b.desc());
  }
  return {};
}

Status linear_lowp(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out) {
  using dnnl::memory;
  using tag = memory::format_tag;
  const int64_t m = x.shape()[0], k = x.shape()[1], n = w.shape()[0];
  try {
    const memory::desc src({m, k}, memory::data_type::bf16, tag::ab);
    const memory::desc dst({m, n}, memory::data_type::f32, tag::ab);
    DnnlKey key{-1, m, k, n, bias.defined() ? 1 : 0};
    MatmulEntry e = matmul_cache().get(key, [&] {
      MatmulEntry r;
      const memory::desc wei_any({k, n}, memory::data_type::bf16, tag::any);
      const memory::desc bmd({1, n}, memory::data_type::f32, tag::ab);
      dnnl::matmul::desc d = bias.defined() ? dnnl::matmul::desc(src, wei_any, bmd, dst)
                                            : dnnl::matmul::desc(src, wei_any, dst);
      dnnl::matmul::primitive_desc pd(d, dnnl_attr(), dnnl_engine());
      r.prim = dnnl::matmul(pd);
      r.src = src;
      r.weights = pd.weights_desc();
      r.bias = bmd;
      r.dst = dst;
      r.scratch = pd.scratchpad_desc();
      return r;
    });
    Tensor xb = Tensor::empty({m, k}, DType::BF16);
    {
      ProfileScope prof("linear.convert");
      f32_to_bf16(x.data<float>(), static_cast<uint16_t*>(xb.raw_data()), m * k);
    }
    // w [N, K] row-major seen as [K, N] with strides {1, K}
    const memory::desc plain({k, n}, memory::data_type::f32, memory::dims{1, k});
    DnnlBuffer wei_hold;
    memory wei = packed_weights(w, plain, e.weights, wei_hold);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, dnnl_wrap(e.src, xb.raw_data())},
                                         {DNNL_ARG_WEIGHTS, wei},
                                         {DNNL_ARG_DST, dnnl_wrap(e.dst, out.raw_data())}};
    if (bias.defined()) args[DNNL_ARG_BIAS] = dnnl_wrap(e.bias, bias.raw_data());
    dnnl_execute(e.prim, e.scratch, std::move(args));
  } catch (const dnnl::error& err) {
    return str("oneDNN bf16 linear failed (", err.what(), ") for ", x.desc(), " x ", w.desc());
  }
  return {};
}

Status sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
             int64_t ldc) {
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                      lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success)
    return str("dnnl_sgemm failed with status ", int(st), " (m=", m, " n=", n, " k=", k, ")");
  return {};
}

}  // namespace diffuse::ops::cpu
