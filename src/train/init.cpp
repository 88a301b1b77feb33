#include "train/init.h"

#include <cmath>
#include <map>
#include <random>
#include <string>

namespace diffuse::train {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_norm(const std::string& name) {
  return name.find("norm") != std::string::npos || name.find("layrnorm") != std::string::npos;
}

}  // namespace

void init_parameters(nn::Module& m, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto params = m.named_parameters();
  // Fan-in of each weight, for its bias (named alike: "x.weight" / "x.bias").
  std::map<std::string, int64_t> fan_in;
  for (const auto& p : params)
    if (ends_with(p.name, ".weight") && p.shape.size() >= 2)
      fan_in[p.name.substr(0, p.name.size() - 6)] = shape_numel(p.shape) / p.shape[0];
  for (const auto& p : params) {
    std::vector<float> v(size_t(shape_numel(p.shape)));
    const std::string& n = p.name;
    const std::string stem = n.substr(0, n.rfind('.') + 1);
    if (n == "logit_scale") {
      v.assign(v.size(), float(std::log(1 / 0.07)));
    } else if (n.find("token_embedding") != std::string::npos ||
               n.find("position_embedding") != std::string::npos ||
               n == "embeddings.class_embedding" || ends_with(n, ".class_embedding")) {
      std::normal_distribution<float> d(0.f, 0.02f);  // token, position, class embeddings
      for (float& x : v) x = d(rng);
    } else if (is_norm(n) && p.shape.size() == 1 && !fan_in.count(stem)) {
      v.assign(v.size(), ends_with(n, ".weight") ? 1.f : 0.f);
    } else {
      const int64_t fi = p.shape.size() >= 2 ? shape_numel(p.shape) / p.shape[0]
                                             : (fan_in.count(stem) ? fan_in.at(stem) : 1);
      const float bound = 1.f / std::sqrt(float(std::max<int64_t>(1, fi)));
      std::uniform_real_distribution<float> d(-bound, bound);
      for (float& x : v) x = d(rng);
    }
    *p.tensor = Tensor::from_vector(v, p.shape);
  }
}

}  // namespace diffuse::train
