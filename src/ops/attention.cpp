// Dispatch of scaled dot-product attention.
#include "ops/cpu/kernels.h"
#include "ops/ops.h"
#include "ops/profile.h"
#include "ops/shape_util.h"

namespace diffuse::ops {

namespace {

// [B, H, L, D] with unit stride in D and row stride >= D, as sgemm reads it; else a copy.
Tensor rows_operand(const Tensor& t) {
  const bool ok = (t.strides()[3] == 1 || t.shape()[3] <= 1) &&
                  (t.shape()[2] <= 1 || t.strides()[2] >= t.shape()[3]);
  return ok ? t : t.contiguous();
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal) {
  check_f32(q, "attention", "q");
  check_f32(k, "attention", "k");
  check_f32(v, "attention", "v");
  DF_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
           "attention: q, k, v must be [B, H, L, Dh], got ", q.desc(), ", ", k.desc(), ", ",
           v.desc());
  const Shape& qs = q.shape();
  const Shape& ks = k.shape();
  const Shape& vs = v.shape();
  DF_CHECK(ks[0] == qs[0] && ks[1] == qs[1] && ks[3] == qs[3], "attention: k ", k.desc(),
           " does not match q ", q.desc(), " (expected [", qs[0], ", ", qs[1], ", Lk, ", qs[3],
           "])");
  DF_CHECK(vs[0] == qs[0] && vs[1] == qs[1] && vs[2] == ks[2], "attention: v ", v.desc(),
           " does not match k ", k.desc(), " (expected [", ks[0], ", ", ks[1], ", ", ks[2],
           ", Dv])");
  DF_CHECK(ks[2] > 0 || qs[2] == 0, "attention: no keys (k ", k.desc(), ")");
  DF_CHECK(qs[3] > 0, "attention: head dim is 0 (q ", q.desc(), ")");
  Tensor out = Tensor::empty({qs[0], qs[1], qs[2], vs[3]});  // [B, H, Lq, Dv]
  if (out.numel() == 0) return out;
  ProfileScope prof(compute_precision() == ComputePrecision::BF16 ? "attention bf16" : "attention",
                    2.0 * double(qs[0] * qs[1] * qs[2]) * double(ks[2]) * double(qs[3] + vs[3]));
  const bool bf16 = compute_precision() == ComputePrecision::BF16;
  auto st =
      bf16 ? cpu::attention_bf16(rows_operand(q), rows_operand(k), rows_operand(v), scale, causal,
                                 out)
           : cpu::attention(rows_operand(q), rows_operand(k), rows_operand(v), scale, causal, out);
  DF_CHECK(st.empty(), "attention: ", st);
  return out;
}

}  // namespace diffuse::ops
