// Helpers shared by the tests that compare whole models: bit-exact tensor maps and model
// components, fresh output folders, and weightless shape maps for config inference.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "io/model_files.h"
#include "io/name_map_check.h"
#include "nn/module.h"
#include "test_util.h"

namespace diffuse::test {

// Same dtype, shape and bytes.
inline bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

inline void expect_same_tensors(const io::TensorMap& got, const io::TensorMap& want,
                                const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, t] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << what << ": " << name << " is missing";
    EXPECT_TRUE(same_bits(it->second, t))
        << what << ": " << name << " " << it->second.desc() << " vs " << t.desc();
  }
}

inline void expect_same_components(const io::ModelFiles& got, const io::ModelFiles& want) {
  expect_same_tensors(got.unet, want.unet, "unet");
  expect_same_tensors(got.vae, want.vae, "vae");
  expect_same_tensors(got.text_encoder, want.text_encoder, "text_encoder");
  expect_same_tensors(got.text_encoder_2, want.text_encoder_2, "text_encoder_2");
}

// temp_dir()/name, emptied.
inline std::string fresh_dir(const std::string& name) {
  const std::filesystem::path p = std::filesystem::path(temp_dir()) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// A module's parameter names and shapes (modules allocate no weights until loaded).
inline io::NamedShapes parameter_shapes(const nn::Module& m) {
  io::NamedShapes out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.name, p.shape);
  return out;
}

// Shapes without data (nothing reads it): what config inference needs.
inline io::TensorMap shape_only(const io::NamedShapes& names) {
  static float dummy;
  io::TensorMap m;
  for (const auto& [name, shape] : names)
    m[name] = Tensor::from_blob(&dummy, shape, DType::F32, nullptr);
  return m;
}

}  // namespace diffuse::test
