// GGUF: the reference Q8_0 file against its safetensors twin, and small synthetic files with
// known block contents for every quantized type the loader reads.
#include <gtest/gtest.h>

#include <cmath>

#include "core/half.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "test_util.h"
#include "weights_testing.h"

using namespace diffuse;
using namespace diffuse::test;

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

void put_u16(std::string& b, uint16_t v) {
  b.push_back(char(v & 0xff));
  b.push_back(char(v >> 8));
}

// One quantized block written from the layout documented for ggml's block types: a half
// scale d, for the *_1 types a half offset m, for Q5 a little-endian word whose bit j is the
// fifth bit of element j, then the low bits: Q4/Q5 put element j in the low nibble of byte j
// and element j + 16 in its high nibble; Q8_0 stores one signed byte per element.
std::string pack_block(io::GgmlType type, const int codes[32], float d, float m) {
  std::string b;
  put_u16(b, float_to_f16(d));
  if (type == io::GgmlType::Q4_1 || type == io::GgmlType::Q5_1) put_u16(b, float_to_f16(m));
  if (type == io::GgmlType::Q8_0) {
    for (int j = 0; j < 32; ++j) b.push_back(char(int8_t(codes[j])));
    return b;
  }
  if (type == io::GgmlType::Q5_0 || type == io::GgmlType::Q5_1) {
    uint32_t high = 0;
    for (int j = 0; j < 32; ++j) high |= uint32_t((codes[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; ++k) b.push_back(char(high >> (8 * k)));
  }
  for (int j = 0; j < 16; ++j) b.push_back(char((codes[j] & 15) | (codes[j + 16] & 15) << 4));
  return b;
}

// The value the format defines for a code.
float expected_value(io::GgmlType type, int code, float d, float m) {
  switch (type) {
    case io::GgmlType::Q4_0:
      return float(code - 8) * d;
    case io::GgmlType::Q5_0:
      return float(code - 16) * d;
    case io::GgmlType::Q4_1:
    case io::GgmlType::Q5_1:
      return float(code) * d + m;
    default:
      return float(code) * d;  // Q8_0
  }
}

struct Synth {
  std::string data;
  std::vector<float> expected;
};

// rows x cols elements (cols a multiple of 32) with codes covering the type's whole range.
Synth synth_quantized(io::GgmlType type, int rows, int cols) {
  const int levels = type == io::GgmlType::Q8_0                                   ? 256
                     : (type == io::GgmlType::Q5_0 || type == io::GgmlType::Q5_1) ? 32
                                                                                  : 16;
  const float scales[] = {0.5f, -0.125f, 0.0999755859375f, 3.0f, 0.0f, 1.5f / 1024};
  const float mins[] = {0.25f, -1.0f, 0.0f, 2.5f, -0.0625f};
  Synth s;
  int blk = 0;
  for (int r = 0; r < rows; ++r)
    for (int c0 = 0; c0 < cols; c0 += 32, ++blk) {
      int codes[32];
      for (int j = 0; j < 32; ++j) {
        int u = (j * 7 + blk * 13 + (j == 0 ? 0 : 1)) % levels;  // 0 and levels-1 both occur
        if (j == 1) u = levels - 1;
        codes[j] = type == io::GgmlType::Q8_0 ? u - 128 : u;
      }
      float d = scales[blk % 6], m = mins[blk % 5];
      s.data += pack_block(type, codes, d, m);
      for (int j = 0; j < 32; ++j) s.expected.push_back(expected_value(type, codes[j], d, m));
    }
  return s;
}

}  // namespace

TEST(Gguf, ReferenceQ8FileMatchesSafetensorsWithinRounding) {
  DF_REQUIRE_REF(gguf, "sd1-tiny/sd1-tiny-q8_0.gguf");
  DF_REQUIRE_REF(sf, "sd1-tiny/sd1-tiny.safetensors");
  io::TensorMap q = io::load_gguf(gguf);
  io::TensorMap ref = io::load_safetensors(sf);
  EXPECT_EQ(io::detect_weight_format(gguf), io::WeightFormat::Gguf);
  for (auto& [name, t] : q) EXPECT_TRUE(ref.count(name)) << name << " is not in the safetensors";
  int n_quantized = 0, n_exact = 0;
  double worst = 0;  // error / (half the block scale), over all Q8_0 blocks
  for (auto& [name, r] : ref) {
    auto it = q.find(name);
    if (it == q.end()) {
      EXPECT_TRUE(ends_with(name, "position_ids")) << name << " is missing from the GGUF";
      continue;
    }
    const Tensor& t = it->second;
    ASSERT_EQ(t.shape(), r.shape()) << name;
    std::vector<float> a = t.to_float_vector(), b = r.to_float_vector();
    if (t.dtype() == DType::F16) {
      EXPECT_EQ(a, b) << name;
      ++n_exact;
      continue;
    }
    ASSERT_EQ(t.dtype(), DType::F32) << name;
    ASSERT_EQ(r.shape().back() % 32, 0) << name;
    ++n_quantized;
    for (size_t b0 = 0; b0 < b.size(); b0 += 32) {
      float amax = 0;
      for (size_t j = b0; j < b0 + 32; ++j) amax = std::max(amax, std::fabs(b[j]));
      const double half_scale = 0.5 * amax / 127;
      // the scale itself is stored as a half: up to 127 * d * 2^-11 more
      const double bound = half_scale + 127 * (amax / 127) * std::ldexp(1.0, -11) + 1e-12;
      for (size_t j = b0; j < b0 + 32; ++j) {
        double err = std::fabs(double(a[j]) - double(b[j]));
        ASSERT_LE(err, bound) << name << " element " << j;
        if (half_scale > 0) worst = std::max(worst, err / half_scale);
      }
    }
  }
  EXPECT_GT(n_quantized, 0);
  EXPECT_GT(n_exact, 0);
  std::printf("Q8_0: %d tensors, worst error %.3f x half a block scale; %d F16 tensors exact\n",
              n_quantized, worst, n_exact);
  // the dispatcher picks the same loader
  EXPECT_EQ(io::load_weights(gguf).size(), q.size());
}

// For a bf16 model the quantized tensors dequantize straight to bf16: each element is the f32
// dequantization rounded to nearest even; the other tensors are as with f32.
TEST(Gguf, DequantizesToBf16OnRequest) {
  DF_REQUIRE_REF(gguf, "sd1-tiny/sd1-tiny-q8_0.gguf");
  io::TensorMap f32 = io::load_gguf(gguf);
  io::TensorMap b16 = io::load_weights(gguf, DType::BF16);
  ASSERT_EQ(b16.size(), f32.size());
  int n_quantized = 0;
  for (auto& [name, t] : f32) {
    const Tensor& u = b16.at(name);
    ASSERT_EQ(u.shape(), t.shape()) << name;
    if (t.dtype() != DType::F32) {
      EXPECT_EQ(u.dtype(), t.dtype()) << name;
      EXPECT_EQ(u.to_float_vector(), t.to_float_vector()) << name;
      continue;
    }
    ASSERT_EQ(u.dtype(), DType::BF16) << name;
    ++n_quantized;
    const std::vector<float> a = t.to_float_vector();
    const uint16_t* p = static_cast<const uint16_t*>(u.raw_data());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(p[i], float_to_bf16(a[i])) << name << " " << i;
  }
  EXPECT_GT(n_quantized, 0);
  EXPECT_THROW(io::load_gguf(gguf, nullptr, DType::F16), Error);
}

TEST(Gguf, SyntheticBlocksOfEveryQuantizedType) {
  const io::GgmlType types[] = {io::GgmlType::Q4_0, io::GgmlType::Q4_1, io::GgmlType::Q5_0,
                                io::GgmlType::Q5_1, io::GgmlType::Q8_0};
  GgufWriter w;
  std::map<std::string, std::vector<float>> expected;
  for (io::GgmlType t : types) {
    Synth s = synth_quantized(t, 3, 64);
    std::string name = std::string("q.") + io::ggml_type_name(uint32_t(t));
    w.tensor(name, {64, 3}, uint32_t(t), s.data);
    expected[name] = s.expected;
    // the same blocks as a 3-d tensor [2, 3, 32] (ne = 32, 3, 2)
    w.tensor(name + ".3d", {32, 3, 2}, uint32_t(t), s.data);
  }
  std::string path = temp_dir() + "/synth.gguf";
  write_bytes(path, w.bytes());
  io::TensorMap m = io::load_gguf(path);
  ASSERT_EQ(m.size(), 10u);
  for (auto& [name, want] : expected) {
    const Tensor& t = m.at(name);
    EXPECT_EQ(t.dtype(), DType::F32);
    EXPECT_EQ(t.shape(), (Shape{3, 64})) << name;
    EXPECT_EQ(t.to_float_vector(), want) << name;
    EXPECT_EQ(m.at(name + ".3d").shape(), (Shape{2, 3, 32})) << name;
    EXPECT_EQ(m.at(name + ".3d").to_float_vector(), want) << name;
  }
  // the dequantizer alone agrees
  Synth s = synth_quantized(io::GgmlType::Q5_1, 1, 96);
  std::vector<float> out(96);
  io::ggml_dequantize(io::GgmlType::Q5_1, s.data.data(), out.data(), 96);
  EXPECT_EQ(out, s.expected);
}

TEST(Gguf, PlainTypesMetadataAndAlignment) {
  std::vector<float> f = {1.5f, -2, 0.25f, 1e-3f, 7, -0.5f};
  std::string f32(reinterpret_cast<const char*>(f.data()), f.size() * 4), f16, bf16;
  for (float v : f) {
    put_u16(f16, float_to_f16(v));
    put_u16(bf16, float_to_bf16(v));
  }
  GgufWriter w;
  w.alignment = 64;
  w.kv_u32("general.alignment", 64);
  w.kv_string("general.architecture", "sd1");
  w.kv_u32("sd.steps", 20);
  w.tensor("a.f32", {3, 2}, 0, f32);
  w.tensor("a.f16", {2, 3}, 1, f16);
  w.tensor("a.bf16", {6}, 30, bf16);
  std::string path = temp_dir() + "/plain.gguf";
  w.version = 2;  // v2 has v3's layout
  write_bytes(path, w.bytes());
  EXPECT_EQ(io::load_gguf(path).size(), 3u);
  w.version = 3;
  write_bytes(path, w.bytes());
  io::Metadata meta;
  io::TensorMap m = io::load_gguf(path, &meta);
  EXPECT_EQ(meta["general.architecture"], "sd1");
  EXPECT_EQ(meta["sd.steps"], "20");
  EXPECT_EQ(m["a.f32"].shape(), (Shape{2, 3}));
  EXPECT_EQ(m["a.f32"].to_float_vector(), f);
  EXPECT_EQ(m["a.f16"].dtype(), DType::F16);
  EXPECT_EQ(m["a.f16"].shape(), (Shape{3, 2}));
  EXPECT_EQ(m["a.bf16"].dtype(), DType::BF16);
  std::vector<float> h = m["a.f16"].to_float_vector(), bh = m["a.bf16"].to_float_vector();
  for (size_t i = 0; i < f.size(); ++i) {
    EXPECT_EQ(h[i], f16_to_float(float_to_f16(f[i])));
    EXPECT_EQ(bh[i], bf16_to_float(float_to_bf16(f[i])));
  }
}

TEST(Gguf, ClearErrorsForUnsupportedFiles) {
  std::string path = temp_dir() + "/bad.gguf";
  {
    GgufWriter w;
    w.tensor("k", {256}, 12, std::string(144, '\0'));  // Q4_K
    write_bytes(path, w.bytes());
    std::string msg = error_of([&] { io::load_gguf(path); });
    EXPECT_NE(msg.find("'k' has GGML type Q4_K (12)"), std::string::npos) << msg;
  }
  {
    GgufWriter w;
    w.version = 1;
    write_bytes(path, w.bytes());
    std::string msg = error_of([&] { io::load_weights(path); });
    EXPECT_NE(msg.find("GGUF version 1"), std::string::npos) << msg;
  }
  {
    GgufWriter w;
    w.tensor("odd", {48, 2}, 8, std::string(34 * 3, '\0'));  // rows of 48: not whole blocks
    write_bytes(path, w.bytes());
    std::string msg = error_of([&] { io::load_gguf(path); });
    EXPECT_NE(msg.find("'odd' rows of 48 elements are not whole Q8_0 blocks"), std::string::npos)
        << msg;
  }
  {
    GgufWriter w;
    w.tensor("dup", {4}, 0, std::string(16, '\0'));
    w.tensor("dup", {4}, 0, std::string(16, '\0'));
    write_bytes(path, w.bytes());
    std::string msg = error_of([&] { io::load_gguf(path); });
    EXPECT_NE(msg.find("'dup' appears twice"), std::string::npos) << msg;
  }
}
