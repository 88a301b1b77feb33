// Convolution backward through oneDNN: the data gradient (convolution_backward_data) and the
// weights and bias gradients (convolution_backward_weights). The primitives pick their own
// layouts (format_tag::any); plain NCHW / OIHW tensors are reordered in and out. Primitives are
// cached per shape and run with a user scratchpad, so one may run on several threads at once.
#include <oneapi/dnnl/dnnl.hpp>

#include <functional>
#include <mutex>
#include <unordered_map>

#include "autograd/kernels/kernels.h"

namespace diffuse::autograd::kernels {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using Key = std::vector<int64_t>;

struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : k) h = (h ^ uint64_t(v)) * 1099511628211ull;
    return size_t(h);
  }
};

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

dnnl::primitive_attr attr() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

struct Buffer {
  Tensor storage;
  memory mem;
};

Buffer buffer(const memory::desc& md) {
  Buffer b;
  b.storage = Tensor::empty({int64_t(md.get_size())}, DType::U8);
  b.mem = memory(md, engine(), b.storage.raw_data());
  return b;
}

memory wrap(const memory::desc& md, const void* p) {
  return memory(md, engine(), const_cast<void*>(p));
}

void execute(const dnnl::primitive& prim, const memory::desc& scratch,
             std::unordered_map<int, memory> args) {
  Buffer s = buffer(scratch);
  args[DNNL_ARG_SCRATCHPAD] = s.mem;
  prim.execute(stream(), args);
  stream().wait();
}

// `user` (plain layout) in the layout `want`: itself or a reordered copy held in `hold`.
memory to_layout(const memory& user, const memory::desc& want, Buffer& hold) {
  if (user.get_desc() == want) return user;
  dnnl::reorder::primitive_desc pd(engine(), user.get_desc(), engine(), want, attr());
  hold = buffer(want);
  execute(dnnl::reorder(pd), pd.scratchpad_desc(),
          {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, hold.mem}});
  return hold.mem;
}

// Writes `prim_mem` (layout of the primitive) into the plain `user` memory when they differ.
void from_layout(const memory& prim_mem, const memory& user) {
  if (prim_mem.get_desc() == user.get_desc()) return;
  dnnl::reorder::primitive_desc pd(engine(), prim_mem.get_desc(), engine(), user.get_desc(),
                                   attr());
  execute(dnnl::reorder(pd), pd.scratchpad_desc(),
          {{DNNL_ARG_FROM, prim_mem}, {DNNL_ARG_TO, user}});
}

struct Dims {
  memory::dims src, wei, dst, strides, pad_l, pad_r;
};

Dims dims_of(const Shape& x, const Shape& w, const Shape& y, const ConvGeometry& p) {
  return {memory::dims(x.begin(), x.end()), memory::dims(w.begin(), w.end()),
          memory::dims(y.begin(), y.end()), {p.stride, p.stride},
          {p.pad_top, p.pad_left},          {p.pad_bottom, p.pad_right}};
}

dnnl::convolution_forward::primitive_desc forward_hint(const Dims& d, bool bias) {
  const auto f32 = memory::data_type::f32;
  const memory::desc src(d.src, f32, tag::any), wei(d.wei, f32, tag::any),
      dst(d.dst, f32, tag::any);
  const auto prop = dnnl::prop_kind::forward_training;
  const auto algo = dnnl::algorithm::convolution_direct;
  auto desc = bias ? dnnl::convolution_forward::desc(prop, algo, src, wei,
                                                     memory::desc({d.wei[0]}, f32, tag::x), dst,
                                                     d.strides, d.pad_l, d.pad_r)
                   : dnnl::convolution_forward::desc(prop, algo, src, wei, dst, d.strides, d.pad_l,
                                                     d.pad_r);
  return dnnl::convolution_forward::primitive_desc(desc, engine());
}

template <typename V>
struct Cache {
  std::mutex mu;
  std::unordered_map<Key, V, KeyHash> map;
  V get(const Key& k, const std::function<V()>& make) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = map.find(k);
      if (it != map.end()) return it->second;
    }
    V v = make();
    std::lock_guard<std::mutex> lock(mu);
    if (map.size() > 1024) map.clear();
    return map.emplace(k, std::move(v)).first->second;
  }
};

Key key_of(const Shape& x, const Shape& w, const ConvGeometry& p, int64_t extra) {
  Key k(x.begin(), x.end());
  k.insert(k.end(), w.begin(), w.end());
  k.insert(k.end(), {p.stride, p.pad_top, p.pad_bottom, p.pad_left, p.pad_right, extra});
  return k;
}

}  // namespace

Tensor conv2d_backward_data(const Tensor& g_, const Tensor& w_, const Shape& x_shape,
                            const ConvGeometry& p) {
  struct Entry {
    dnnl::convolution_backward_data prim;
    memory::desc diff_src, wei, diff_dst, scratch;
  };
  static Cache<Entry> cache;
  const Tensor g = g_.contiguous(), w = w_.contiguous();
  const Dims d = dims_of(x_shape, w.shape(), g.shape(), p);
  const auto f32 = memory::data_type::f32;
  Tensor dx = Tensor::empty(x_shape);
  try {
    Entry e = cache.get(key_of(x_shape, w.shape(), p, 0), [&] {
      auto hint = forward_hint(d, false);
      dnnl::convolution_backward_data::desc desc(
          dnnl::algorithm::convolution_direct, memory::desc(d.src, f32, tag::any),
          memory::desc(d.wei, f32, tag::any), memory::desc(d.dst, f32, tag::any), d.strides,
          d.pad_l, d.pad_r);
      dnnl::convolution_backward_data::primitive_desc pd(desc, attr(), engine(), hint);
      return Entry{dnnl::convolution_backward_data(pd), pd.diff_src_desc(), pd.weights_desc(),
                   pd.diff_dst_desc(), pd.scratchpad_desc()};
    });
    Buffer gh, wh, dxh;
    memory gm = to_layout(wrap(memory::desc(d.dst, f32, tag::nchw), g.raw_data()), e.diff_dst, gh);
    memory wm = to_layout(wrap(memory::desc(d.wei, f32, tag::oihw), w.raw_data()), e.wei, wh);
    memory user_dx = wrap(memory::desc(d.src, f32, tag::nchw), dx.raw_data());
    memory dxm = user_dx;
    if (e.diff_src != user_dx.get_desc()) {
      dxh = buffer(e.diff_src);
      dxm = dxh.mem;
    }
    execute(e.prim, e.scratch,
            {{DNNL_ARG_DIFF_DST, gm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dxm}});
    from_layout(dxm, user_dx);
  } catch (const dnnl::error& err) {
    DF_FAIL("conv2d backward (data) failed in oneDNN (", err.what(), ") for grad ", g.desc(),
            ", weight ", w.desc());
  }
  return dx;
}

void conv2d_backward_weights(const Tensor& x_, const Tensor& g_, const Shape& w_shape,
                             const ConvGeometry& p, bool with_bias, Tensor& dw, Tensor& db) {
  struct Entry {
    dnnl::convolution_backward_weights prim;
    memory::desc src, diff_wei, diff_bias, diff_dst, scratch;
  };
  static Cache<Entry> cache;
  const Tensor x = x_.contiguous(), g = g_.contiguous();
  const Dims d = dims_of(x.shape(), w_shape, g.shape(), p);
  const auto f32 = memory::data_type::f32;
  dw = Tensor::empty(w_shape);
  db = with_bias ? Tensor::empty({w_shape[0]}) : Tensor();
  try {
    Entry e = cache.get(key_of(x.shape(), w_shape, p, with_bias ? 1 : 0), [&] {
      auto hint = forward_hint(d, with_bias);
      const memory::desc src(d.src, f32, tag::any), wei(d.wei, f32, tag::any),
          dst(d.dst, f32, tag::any);
      const auto algo = dnnl::algorithm::convolution_direct;
      auto desc = with_bias ? dnnl::convolution_backward_weights::desc(
                                  algo, src, wei, memory::desc({d.wei[0]}, f32, tag::x), dst,
                                  d.strides, d.pad_l, d.pad_r)
                            : dnnl::convolution_backward_weights::desc(algo, src, wei, dst,
                                                                       d.strides, d.pad_l, d.pad_r);
      dnnl::convolution_backward_weights::primitive_desc pd(desc, attr(), engine(), hint);
      return Entry{dnnl::convolution_backward_weights(pd),
                   pd.src_desc(),
                   pd.diff_weights_desc(),
                   pd.diff_bias_desc(),
                   pd.diff_dst_desc(),
                   pd.scratchpad_desc()};
    });
    Buffer xh, gh, dwh;
    memory xm = to_layout(wrap(memory::desc(d.src, f32, tag::nchw), x.raw_data()), e.src, xh);
    memory gm = to_layout(wrap(memory::desc(d.dst, f32, tag::nchw), g.raw_data()), e.diff_dst, gh);
    memory user_dw = wrap(memory::desc(d.wei, f32, tag::oihw), dw.raw_data());
    memory dwm = user_dw;
    if (e.diff_wei != user_dw.get_desc()) {
      dwh = buffer(e.diff_wei);
      dwm = dwh.mem;
    }
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, gm}, {DNNL_ARG_DIFF_WEIGHTS, dwm}};
    if (with_bias) args[DNNL_ARG_DIFF_BIAS] = wrap(e.diff_bias, db.raw_data());
    execute(e.prim, e.scratch, std::move(args));
    from_layout(dwm, user_dw);
  } catch (const dnnl::error& err) {
    DF_FAIL("conv2d backward (weights) failed in oneDNN (", err.what(), ") for input ", x.desc(),
            ", grad ", g.desc());
  }
}

}  // namespace diffuse::autograd::kernels
