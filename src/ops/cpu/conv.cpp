// 2-D convolution through oneDNN. oneDNN picks its preferred layouts with format_tag::any;
// plain NCHW/OIHW tensors are reordered in and out around the primitive. Primitives and
// reorders are cached per shape. With f16/bf16 weights the primitive runs in bf16 (input
// converted by its reorder, output f32) and the weights come packed from the weight cache.
#include "ops/cpu/dnnl_util.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/weight_cache.h"
#include "ops/ops.h"
#include "ops/profile.h"

namespace diffuse::ops::cpu {

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

// A reorder between a plain layout and the primitive's, when they differ.
struct Reorder {
  bool needed = false;
  dnnl::reorder prim;
  memory::desc scratch;
};

struct ConvEntry {
  dnnl::convolution_forward prim;
  memory::desc src, weights, bias, dst, scratch;  // the primitive's layouts
  memory::desc user_src, user_weights, user_dst;  // plain NCHW / OIHW (f32)
  Reorder src_in, weights_in, dst_out;
};

Reorder make_reorder(const memory::desc& from, const memory::desc& to) {
  Reorder r;
  if (from == to) return r;
  dnnl::reorder::primitive_desc pd(dnnl_engine(), from, dnnl_engine(), to, dnnl_attr());
  r.needed = true;
  r.prim = dnnl::reorder(pd);
  r.scratch = pd.scratchpad_desc();
  return r;
}

PrimitiveCache<ConvEntry>& conv_cache() {
  static PrimitiveCache<ConvEntry> cache;
  return cache;
}

ConvEntry make_entry(const Tensor& x, const Tensor& w, bool has_bias, const Conv2dParams& p,
                     const Shape& out_shape, bool lowp) {
  const memory::dims src_dims(x.shape().begin(), x.shape().end());
  const memory::dims wei_dims(w.shape().begin(), w.shape().end());
  const memory::dims dst_dims(out_shape.begin(), out_shape.end());
  const auto f32 = memory::data_type::f32;
  const auto cdt = lowp ? memory::data_type::bf16 : f32;  // the products' input type
  ConvEntry e;
  e.user_src = memory::desc(src_dims, f32, tag::nchw);
  e.user_weights = memory::desc(wei_dims, f32, tag::oihw);
  e.user_dst = memory::desc(dst_dims, f32, tag::nchw);
  const memory::desc src_any(src_dims, cdt, tag::any);
  const memory::desc wei_any(wei_dims, cdt, tag::any);
  const memory::desc dst_any(dst_dims, f32, tag::any);
  const memory::dims strides{p.stride, p.stride};
  const memory::dims pad_l{p.pad_top, p.pad_left}, pad_r{p.pad_bottom, p.pad_right};
  const auto prop = dnnl::prop_kind::forward_inference;
  const auto algo = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::desc d =
      has_bias ? dnnl::convolution_forward::desc(prop, algo, src_any, wei_any,
                                                 memory::desc({w.shape()[0]}, f32, tag::x), dst_any,
                                                 strides, pad_l, pad_r)
               : dnnl::convolution_forward::desc(prop, algo, src_any, wei_any, dst_any, strides,
                                                 pad_l, pad_r);
  dnnl::convolution_forward::primitive_desc pd(d, dnnl_attr(), dnnl_engine());
  e.prim = dnnl::convolution_forward(pd);
  e.src = pd.src_desc();
  e.weights = pd.weights_desc();
  e.bias = pd.bias_desc();
  e.dst = pd.dst_desc();
  e.scratch = pd.scratchpad_desc();
  e.src_in = make_reorder(e.user_src, e.src);
  if (!lowp) e.weights_in = make_reorder(e.user_weights, e.weights);
  e.dst_out = make_reorder(e.dst, e.user_dst);
  return e;
}

// Returns memory in the primitive's layout `md`: `user` itself, or a reordered copy held in
// `hold`.
memory reorder_in(const Reorder& r, const memory& user, const memory::desc& md, DnnlBuffer& hold,
                  const char* label) {
  if (!r.needed) return user;
  ProfileScope prof(label);
  hold = dnnl_buffer(md);
  dnnl_execute(r.prim, r.scratch, {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, hold.mem}});
  return hold.mem;
}

}  // namespace

Status conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
              const Shape& out_shape, Tensor& out) {
  try {
    const bool lowp = bf16_products(w);
    DnnlKey key(x.shape().begin(), x.shape().end());
    key.insert(key.end(), w.shape().begin(), w.shape().end());
    key.insert(key.end(), {p.stride, p.pad_top, p.pad_bottom, p.pad_left, p.pad_right,
                           bias.defined() ? 1 : 0, lowp ? 1 : 0});
    const ConvEntry e =
        conv_cache().get(key, [&] { return make_entry(x, w, bias.defined(), p, out_shape, lowp); });

    DnnlBuffer src_hold, wei_hold, dst_hold;
    memory src = reorder_in(e.src_in, dnnl_wrap(e.user_src, x.raw_data()), e.src, src_hold,
                            "conv2d.reorder_src");
    memory wei = lowp ? packed_weights(w, e.user_weights, e.weights, wei_hold)
                      : reorder_in(e.weights_in, dnnl_wrap(e.user_weights, w.raw_data()), e.weights,
                                   wei_hold, "conv2d.reorder_wei");
    memory dst;
    if (e.dst_out.needed) {
      dst_hold = dnnl_buffer(e.dst);
      dst = dst_hold.mem;
    } else {
      out = Tensor::empty(out_shape);
      dst = dnnl_wrap(e.user_dst, out.raw_data());
    }
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
    if (bias.defined()) args[DNNL_ARG_BIAS] = dnnl_wrap(e.bias, bias.raw_data());
    {
      ProfileScope prof("conv2d.exec");
      dnnl_execute(e.prim, e.scratch, std::move(args));
    }
    src_hold = DnnlBuffer();  // free the reordered input before the output is allocated
    wei_hold = DnnlBuffer();
    if (e.dst_out.needed) {
      ProfileScope prof("conv2d.reorder_out");
      out = Tensor::empty(out_shape);
      dnnl_execute(e.dst_out.prim, e.dst_out.scratch,
                   {{DNNL_ARG_FROM, dst}, {DNNL_ARG_TO, dnnl_wrap(e.user_dst, out.raw_data())}});
    }
  } catch (const dnnl::error& err) {
    return str("oneDNN conv2d failed (", err.what(), ") for x ", x.desc(), ", w ", w.desc());
  }
  return {};
}

}  // namespace diffuse::ops::cpu
