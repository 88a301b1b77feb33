#include "pipeline/conditioning.h"

#include "core/error.h"
#include "ops/ops.h"

namespace diffuse::pipeline {

Tensor repeat_batch(const Tensor& t, int64_t n) {
  if (!t.defined() || n == 1) return t;
  return ops::cat(std::vector<Tensor>(size_t(n), t), 0);
}

namespace {

Tensor cat_rows(const Tensor& a, const Tensor& b, const char* what) {
  DF_CHECK(a.defined() == b.defined(), "conditioning: one side has ", what, ", the other not");
  return a.defined() ? ops::cat({a, b}, 0) : Tensor();
}

}  // namespace

Conditioning Conditioning::repeat(int64_t n) const {
  return {repeat_batch(context, n), repeat_batch(pooled, n), repeat_batch(time_ids, n)};
}

Conditioning Conditioning::cat(const Conditioning& a, const Conditioning& b) {
  DF_CHECK(a.context.size(1) == b.context.size(1), "conditioning: contexts of ", a.context.size(1),
           " and ", b.context.size(1), " tokens cannot share a batch");
  return {cat_rows(a.context, b.context, "a context"), cat_rows(a.pooled, b.pooled, "a pooled embedding"),
          cat_rows(a.time_ids, b.time_ids, "time ids")};
}

Tensor make_time_ids(const FamilyInfo& family, const SizeConditioning& s, int64_t width,
                     int64_t height, bool negative) {
  const auto or_size = [](int64_t v, int64_t dflt) { return float(v > 0 ? v : dflt); };
  const float oh = or_size(s.original_height, height), ow = or_size(s.original_width, width);
  const float top = float(s.crop_top), left = float(s.crop_left);
  switch (family.time_ids) {
    case TimeIds::None: return Tensor();
    case TimeIds::SizeCropTarget:
      return Tensor::from_vector({oh, ow, top, left, or_size(s.target_height, height),
                                  or_size(s.target_width, width)},
                                 {1, 6});
    case TimeIds::SizeCropAesthetic:
      return Tensor::from_vector(
          {oh, ow, top, left, negative ? s.negative_aesthetic_score : s.aesthetic_score}, {1, 5});
  }
  return Tensor();
}

}  // namespace diffuse::pipeline
