#include <gtest/gtest.h>

#include <fstream>

#include "io/safetensors.h"
#include "test_util.h"

using namespace diffuse;

TEST(Safetensors, SaveLoadRoundTripWithViewsAndMetadata) {
  std::string path = test::temp_dir() + "/rt.safetensors";
  io::TensorMap m;
  m["a"] = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}).transpose(0, 1);
  m["b"] = Tensor::from_i64({7, 8}, {2});
  m["c"] = Tensor::from_vector({0.5f, -1.f}, {2}).to(DType::F16);
  io::save_safetensors(path, m, {{"format", "pt"}});
  io::Metadata meta;
  auto r = io::load_safetensors(path, &meta);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(meta["format"], "pt");
  EXPECT_EQ(r["a"].shape(), (Shape{3, 2}));
  EXPECT_EQ(r["a"].to_float_vector(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(r["b"].dtype(), DType::I64);
  EXPECT_EQ(r["b"].data<int64_t>()[1], 8);
  EXPECT_EQ(r["c"].dtype(), DType::F16);
  EXPECT_EQ(r["c"].to_float_vector()[1], -1.f);
}

TEST(Safetensors, MissingFileIsAClearError) {
  try {
    io::load_safetensors("/nonexistent/x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.safetensors"), std::string::npos);
  }
}
