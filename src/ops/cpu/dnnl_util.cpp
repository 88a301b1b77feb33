// oneDNN engine, streams, buffers and execution helpers.
#include "ops/cpu/dnnl_util.h"

namespace diffuse::ops::cpu {

dnnl::engine& dnnl_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream stream(dnnl_engine());
  return stream;
}

dnnl::primitive_attr dnnl_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

DnnlBuffer dnnl_buffer(const dnnl::memory::desc& md) {
  DnnlBuffer b;
  const size_t bytes = md.get_size();
  b.storage = Tensor::empty({int64_t(bytes)}, DType::U8);
  b.mem = dnnl::memory(md, dnnl_engine(), b.storage.raw_data());
  return b;
}

dnnl::memory dnnl_wrap(const dnnl::memory::desc& md, const void* data) {
  return dnnl::memory(md, dnnl_engine(), const_cast<void*>(data));
}

void dnnl_execute(const dnnl::primitive& prim, const dnnl::memory::desc& scratch_md,
                  std::unordered_map<int, dnnl::memory> args) {
  DnnlBuffer scratch;
  if (scratch_md.get_size() > 0) {
    scratch = dnnl_buffer(scratch_md);
    args[DNNL_ARG_SCRATCHPAD] = scratch.mem;
  }
  dnnl::stream& s = dnnl_stream();
  prim.execute(s, args);
  s.wait();
}

dnnl::memory::desc dnnl_desc(const Shape& shape, const Shape& strides) {
  dnnl::memory::dims dims(shape.begin(), shape.end());
  dnnl::memory::dims st(strides.begin(), strides.end());
  int64_t dense = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) st[i] = dense;
    dense = std::max<int64_t>(dense, st[i] * shape[i]);
  }
  return dnnl::memory::desc(dims, dnnl::memory::data_type::f32, st);
}

}  // namespace diffuse::ops::cpu
