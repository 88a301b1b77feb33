#include "training_ref.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/autograd.h"
#include "io/mmap_file.h"
#include "test_util.h"

namespace diffuse::test {

nlohmann::json read_json_file(const std::string& path) {
  return nlohmann::json::parse(io::read_text_file(path));
}

void expect_grads_match(const std::vector<nn::Module::ParamRef>& params, const io::TensorMap& ref,
                        const std::string& prefix, double tol) {
  auto norm_of = [](const Tensor& t) {
    double s = 0;
    for (float v : t.to_float_vector()) s += double(v) * double(v);
    return std::sqrt(s);
  };
  // Some gradients are zero in exact arithmetic (e.g. the bias of a convolution followed by a
  // group norm with one channel per group: a per-channel constant is normalized away), so the
  // reference holds rounding noise there. Below this floor a gradient counts as zero and ours
  // must be as small; every other one is compared relatively.
  double scale = 0;
  for (const auto& [name, t] : ref)
    if (name.rfind(prefix, 0) == 0) scale = std::max(scale, norm_of(t));
  const double floor = 1e-6 * scale;
  std::set<std::string> seen;
  double worst = 0;
  std::string worst_name;
  int zeros = 0;
  for (const auto& p : params) {
    SCOPED_TRACE(prefix + p.name);
    auto it = ref.find(prefix + p.name);
    EXPECT_NE(it, ref.end()) << "the reference has no gradient for parameter " << p.name;
    if (it == ref.end()) continue;
    seen.insert(it->first);
    const Tensor g = autograd::grad(*p.tensor);
    const Tensor& expected = it->second;
    if (norm_of(expected) <= floor) {
      ++zeros;
      if (g.defined()) {
        EXPECT_LE(norm_of(g), floor) << p.name << ": expected a zero gradient";
      }
      continue;
    }
    ASSERT_TRUE(g.defined()) << "no gradient reached " << p.name;
    ASSERT_EQ(g.shape(), expected.shape());
    const double e = rel_error(g, expected.to(DType::F32));
    EXPECT_LE(e, tol) << p.name << ": relative error " << e;
    if (e > worst) {
      worst = e;
      worst_name = p.name;
    }
  }
  for (const auto& [name, t] : ref) {
    if (name.rfind(prefix, 0) == 0) {
      EXPECT_TRUE(seen.count(name)) << "reference gradient " << name << " has no parameter";
    }
  }
  EXPECT_GT(seen.size(), size_t(zeros)) << "no gradients with prefix " << prefix;
  std::printf(
      "[ info ] %s: %zu gradients (%d zero up to rounding), worst relative error %.3g (%s)\n",
      prefix.c_str(), seen.size(), zeros, worst, worst_name.c_str());
}

}  // namespace diffuse::test
