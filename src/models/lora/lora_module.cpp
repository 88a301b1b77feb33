#include "models/lora/lora_module.h"

#include "core/error.h"
#include "ops/ops.h"

namespace diffuse::models {

namespace {

Tensor f32(const Tensor& t) {
  return t.to(DType::F32).contiguous();
}

// t as a matrix [rows, everything else]
Tensor rows(const Tensor& t) {
  return f32(t).view({t.size(0), -1});
}

// sum_nm core[n, m, k, l] a[i, n] b[m, j] -> [i, j, kh, kw], for core [n, m, kh, kw],
// a [i, n], b [m, j] (the Tucker decomposition LyCORIS stores for convolutions).
Tensor tucker(const Tensor& core, const Tensor& a, const Tensor& b) {
  const int64_t n = core.size(0), m = core.size(1), kh = core.size(2), kw = core.size(3);
  const int64_t i = a.size(0), j = b.size(1), kk = kh * kw;
  Tensor t = ops::matmul(a, f32(core).view({n, m * kk}));  // [i, m * kk]
  t = t.view({i, m, kk}).permute({0, 2, 1}).contiguous();  // i m kk -> i kk m
  t = ops::matmul(t.view({i * kk, m}), b);                 // [(i kk), j]
  return t.view({i, kk, j}).permute({0, 2, 1}).contiguous().view({i, j, kh, kw});  // -> i j kk
}

Tensor transposed(const Tensor& t) {
  return f32(t).transpose(0, 1).contiguous();  // [r, out] -> [out, r]
}

// kron(a [p, q], b [r, s]) -> [p * r, q * s]
Tensor kron(const Tensor& a, const Tensor& b) {
  const int64_t p = a.size(0), q = a.size(1), r = b.size(0), s = b.size(1);
  // [p, 1, q, 1] * [1, r, 1, s] -> [p, r, q, s] -> [(p r), (q s)]
  return ops::mul(a.view({p, 1, q, 1}), b.view({1, r, 1, s})).view({p * r, q * s});
}

std::string shapes_of(const LoraModule& m) {
  std::string s;
  const std::pair<const char*, const Tensor*> all[] = {
      {"down", &m.down},    {"up", &m.up},     {"mid", &m.mid}, {"w1", &m.w1},
      {"w1_a", &m.w1_a},    {"w1_b", &m.w1_b}, {"w2", &m.w2},   {"w2_a", &m.w2_a},
      {"w2_b", &m.w2_b},    {"t1", &m.t1},     {"t2", &m.t2},   {"diff", &m.diff},
      {"diff_b", &m.diff_b}};
  for (auto& [name, t] : all)
    if (t->defined()) s += str(s.empty() ? "" : ", ", name, " ", shape_str(t->shape()));
  return s;
}

// The LoRA / LoCon change's shape.
Shape lora_shape(const LoraModule& m) {
  const Tensor &d = m.down, &u = m.up;
  if (!d.defined() || !u.defined()) return {};
  const bool dims_ok = (d.dim() == 2 || d.dim() == 4) && u.dim() == d.dim() &&
                       (u.dim() == 2 || (u.size(2) == 1 && u.size(3) == 1)) && d.size(0) > 0;
  if (!dims_ok) return {};
  if (!m.mid.defined()) {
    if (u.size(1) != d.size(0)) return {};
    return d.dim() == 4 ? Shape{u.size(0), d.size(1), d.size(2), d.size(3)}
                        : Shape{u.size(0), d.size(1)};
  }
  const Tensor& c = m.mid;  // [r_up, r_down, kh, kw]
  if (c.dim() != 4 || c.size(0) != u.size(1) || c.size(1) != d.size(0) ||
      (d.dim() == 4 && (d.size(2) != 1 || d.size(3) != 1)))
    return {};
  return {u.size(0), d.size(1), c.size(2), c.size(3)};
}

// One LoHa factor's shape: a @ b, or the Tucker product with core t.
Shape hada_factor_shape(const Tensor& a, const Tensor& b, const Tensor& t) {
  if (!a.defined() || !b.defined() || a.dim() != 2 || (b.dim() != 2 && b.dim() != 4)) return {};
  if (!t.defined()) {
    if (a.size(1) != b.size(0)) return {};
    Shape s{a.size(0), b.size(1)};
    if (b.dim() == 4) s.insert(s.end(), {b.size(2), b.size(3)});
    return s;
  }
  if (t.dim() != 4 || b.dim() != 2 || t.size(0) != a.size(0) || t.size(1) != b.size(0)) return {};
  return {a.size(1), b.size(1), t.size(2), t.size(3)};
}

Shape loha_shape(const LoraModule& m) {
  if (m.t1.defined() != m.t2.defined()) return {};
  const Shape s1 = hada_factor_shape(m.w1_a, m.w1_b, m.t1);
  const Shape s2 = hada_factor_shape(m.w2_a, m.w2_b, m.t2);
  return s1 == s2 ? s1 : Shape{};
}

// A LoKr factor's shape: the full matrix, or a @ b, or (w2 only) the Tucker product with t.
Shape lokr_factor_shape(const Tensor& full, const Tensor& a, const Tensor& b, const Tensor& t) {
  if (full.defined()) {
    if (a.defined() || b.defined() || t.defined() || (full.dim() != 2 && full.dim() != 4))
      return {};
    return full.shape();
  }
  if (!a.defined() || !b.defined() || a.dim() != 2 || b.dim() != 2) return {};
  if (t.defined()) {
    if (t.dim() != 4 || t.size(0) != a.size(0) || t.size(1) != b.size(0)) return {};
    return {a.size(1), b.size(1), t.size(2), t.size(3)};
  }
  if (a.size(1) != b.size(0)) return {};
  return {a.size(0), b.size(1)};
}

Shape lokr_shape(const LoraModule& m) {
  const Shape s1 = lokr_factor_shape(m.w1, m.w1_a, m.w1_b, Tensor());
  const Shape s2 = lokr_factor_shape(m.w2, m.w2_a, m.w2_b, m.t2);
  if (s1.size() != 2 || s2.empty()) return {};
  Shape s{s1[0] * s2[0], s1[1] * s2[1]};
  if (s2.size() == 4) s.insert(s.end(), {s2[2], s2[3]});
  return s;
}

Shape full_shape(const LoraModule& m) {
  const Tensor& d = m.diff;
  if (!d.defined() || (d.dim() != 2 && d.dim() != 4)) return {};
  if (m.diff_b.defined() && (m.diff_b.dim() != 1 || m.diff_b.size(0) != d.size(0))) return {};
  return d.shape();
}

}  // namespace

const char* lora_type_name(LoraType t) {
  switch (t) {
    case LoraType::Lora:
      return "LoRA";
    case LoraType::LoHa:
      return "LoHa";
    case LoraType::LoKr:
      return "LoKr";
    case LoraType::Full:
      return "full";
  }
  return "?";
}

int64_t LoraModule::dim() const {
  switch (type) {
    case LoraType::Lora:
      return down.defined() ? down.size(0) : 0;
    case LoraType::LoHa:
      return w1_b.defined() ? w1_b.size(0) : 0;
    case LoraType::LoKr:
      return w2_b.defined() ? w2_b.size(0) : w1_b.defined() ? w1_b.size(0) : 0;
    case LoraType::Full:
      return 0;
  }
  return 0;
}

Shape LoraModule::delta_shape(const std::string& name) const {
  Shape s;
  switch (type) {
    case LoraType::Lora:
      s = lora_shape(*this);
      break;
    case LoraType::LoHa:
      s = loha_shape(*this);
      break;
    case LoraType::LoKr:
      s = lokr_shape(*this);
      break;
    case LoraType::Full:
      s = full_shape(*this);
      break;
  }
  DF_CHECK(!s.empty() && shape_numel(s) > 0, lora_type_name(type), " module ", name,
           ": its factors are missing or do not fit together (", shapes_of(*this), ")");
  return s;
}

bool LoraModule::fits(const Shape& w) const {
  const Shape d = delta_shape("");
  const bool kernel_ok =
      d.size() == 2 || (w.size() == 4 ? d[2] == w[2] && d[3] == w[3] : d[2] * d[3] == 1);
  return (w.size() == 2 || w.size() == 4) && d[0] == w[0] && shape_numel(d) == shape_numel(w) &&
         kernel_ok;
}

Tensor LoraModule::delta(float multiplier, const Shape& w, const std::string& name) const {
  const Shape s = delta_shape(name);
  DF_CHECK(fits(w), lora_type_name(type), " module ", name, " (", shapes_of(*this),
           ") does not fit the layer's weight ", shape_str(w));
  Tensor d;
  switch (type) {
    case LoraType::Lora:
      d = mid.defined() ? tucker(mid, rows(up), rows(down)) : ops::matmul(rows(up), rows(down));
      break;
    case LoraType::LoHa:
      d = t1.defined()
              ? ops::mul(tucker(t1, transposed(w1_a), f32(w1_b)),
                         tucker(t2, transposed(w2_a), f32(w2_b)))
              : ops::mul(ops::matmul(f32(w1_a), rows(w1_b)), ops::matmul(f32(w2_a), rows(w2_b)));
      break;
    case LoraType::LoKr: {
      const Tensor a = w1.defined() ? f32(w1) : ops::matmul(f32(w1_a), f32(w1_b));
      const Tensor b = w2.defined()   ? rows(w2)
                       : t2.defined() ? rows(tucker(t2, transposed(w2_a), f32(w2_b)))
                                      : ops::matmul(f32(w2_a), f32(w2_b));
      d = kron(a, b);  // a kernel of w2 stays in its columns: [a c, b d kh kw]
      break;
    }
    case LoraType::Full:
      d = f32(diff);
      break;
  }
  // [out, ...] as the factors give it (s) -> the weight's shape
  return ops::scale(d.contiguous().view(s), multiplier * scale()).view(w);
}

Tensor LoraModule::bias_delta(float multiplier) const {
  return diff_b.defined() ? ops::scale(f32(diff_b), multiplier) : Tensor();
}

}  // namespace diffuse::models
