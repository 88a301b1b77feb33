// Module: a node of a model with named parameters and named children whose names mirror
// the checkpoint's (canonical) tensor names. Loading is strict.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/tensor_map.h"

namespace diffuse::nn {

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  struct ParamRef {
    std::string name;
    Tensor* tensor;
    Shape shape;
  };
  // Every parameter below this module, with dotted names ("layers.0.fc1.weight").
  std::vector<ParamRef> named_parameters(const std::string& prefix = "") const;
  int64_t num_parameters() const;

  // Fills every parameter from `weights` (canonical names, relative to this module).
  // Strict: missing, unexpected and wrongly shaped tensors are listed in one Error that names
  // `what` (e.g. "text encoder of model.safetensors"). Tensors are converted to `dtype`, or
  // keep their own with std::nullopt; tensors already in it are used in place (no copy of
  // memory-mapped weights).
  void load_state_dict(const io::TensorMap& weights, const std::string& what,
                       std::optional<DType> dtype = DType::F32);

 protected:
  // Declares a parameter held in the member `slot` with its expected shape.
  void register_parameter(const std::string& name, Tensor& slot, Shape shape);
  // Declares a child module held in a member (or owned by a member container).
  void register_module(const std::string& name, Module& child);

 private:
  std::vector<ParamRef> params_;
  std::vector<std::pair<std::string, Module*>> children_;
};

// A list of children named "0", "1", ... as in torch.nn.ModuleList.
template <typename M>
class ModuleList : public Module {
 public:
  template <typename... Args>
  M& emplace_back(Args&&... args) {
    items_.push_back(std::make_unique<M>(std::forward<Args>(args)...));
    register_module(std::to_string(items_.size() - 1), *items_.back());
    return *items_.back();
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) { return *items_[i]; }
  const M& operator[](size_t i) const { return *items_[i]; }

 private:
  std::vector<std::unique_ptr<M>> items_;
};

}  // namespace diffuse::nn
