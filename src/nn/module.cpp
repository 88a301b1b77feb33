#include "nn/module.h"

#include <set>

namespace diffuse::nn {

void Module::register_parameter(const std::string& name, Tensor& slot, Shape shape) {
  params_.push_back({name, &slot, std::move(shape)});
}

void Module::register_module(const std::string& name, Module& child) {
  children_.emplace_back(name, &child);
}

std::vector<Module::ParamRef> Module::named_parameters(const std::string& prefix) const {
  std::vector<ParamRef> out;
  for (auto& p : params_) out.push_back({prefix + p.name, p.tensor, p.shape});
  for (auto& [name, child] : children_) {
    auto sub = child->named_parameters(prefix + name + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += shape_numel(p.shape);
  return n;
}

void Module::load_state_dict(const io::TensorMap& weights, const std::string& what,
                             std::optional<DType> dtype) {
  auto params = named_parameters();
  std::vector<std::string> missing, mismatched;
  std::set<std::string> used;
  for (auto& p : params) {
    auto it = weights.find(p.name);
    if (it == weights.end()) {
      missing.push_back(p.name);
      continue;
    }
    used.insert(p.name);
    if (it->second.shape() != p.shape) {
      mismatched.push_back(p.name + " (expected " + shape_str(p.shape) + ", got " +
                           shape_str(it->second.shape()) + ")");
    }
  }
  std::vector<std::string> unexpected;
  for (auto& [name, t] : weights)
    if (!used.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = what + ": weights do not fit the model:";
    auto list = [&](const char* label, const std::vector<std::string>& v) {
      if (v.empty()) return;
      msg += str(" ", v.size(), " ", label, " (");
      for (size_t i = 0; i < v.size() && i < 8; ++i) msg += (i ? ", " : "") + v[i];
      if (v.size() > 8) msg += str(", ... ", v.size() - 8, " more");
      msg += ")";
    };
    list("missing", missing);
    list("unexpected", unexpected);
    list("with wrong shape", mismatched);
    throw Error(msg);
  }
  for (auto& p : params) {
    const Tensor& src = weights.at(p.name);
    *p.tensor = !dtype || src.dtype() == *dtype ? src.contiguous() : src.to(*dtype);
  }
}

}  // namespace diffuse::nn
