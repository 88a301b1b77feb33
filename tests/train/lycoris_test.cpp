// LyCORIS module types (LoCon incl. Tucker, LoHa, LoKr, full diff): each delta against a plain
// loop over its formula, the scale rules, files mixing types written and read back, clear errors
// for DoRA, unknown types, incomplete and inconsistent modules, and merging into a UNet's
// convolutions and biases.
#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "models/lora/lora_merge.h"
#include "test_util.h"
#include "train_test_util.h"

using namespace diffuse;
using models::LoraModule;
using models::LoraType;

namespace {

Tensor rnd(const Shape& s, uint32_t seed) {
  return test::seeded_randn(s, seed, 0.5f);
}

// Row-major element access of a float vector with shape s.
struct Arr {
  std::vector<float> v;
  Shape s;
  explicit Arr(const Tensor& t) : v(t.to(DType::F32).to_float_vector()), s(t.shape()) {}
  float operator()(int64_t i, int64_t j) const { return v[size_t(i * s[1] + j)]; }
  float operator()(int64_t i, int64_t j, int64_t k, int64_t l) const {
    return v[size_t(((i * s[1] + j) * s[2] + k) * s[3] + l)];
  }
};

// sum_r a[i, r] b[r, j] for 2-D a, b (b's columns: everything after its first dim)
std::vector<float> matmul_loop(const Tensor& at, const Tensor& bt) {
  const Arr a(at), b(bt.contiguous().view({bt.size(0), -1}));
  std::vector<float> out(size_t(a.s[0] * b.s[1]));
  for (int64_t i = 0; i < a.s[0]; ++i)
    for (int64_t j = 0; j < b.s[1]; ++j) {
      double acc = 0;
      for (int64_t r = 0; r < a.s[1]; ++r) acc += double(a(i, r)) * b(r, j);
      out[size_t(i * b.s[1] + j)] = float(acc);
    }
  return out;
}

// sum_nm core[n, m, k, l] a[i, n] b[m, j] -> [i, j, kh, kw]
std::vector<float> tucker_loop(const Tensor& core_t, const Tensor& a_t, const Tensor& b_t) {
  const Arr c(core_t), a(a_t), b(b_t);
  const int64_t I = a.s[0], J = b.s[1], N = c.s[0], M = c.s[1], K = c.s[2], L = c.s[3];
  std::vector<float> out(size_t(I * J * K * L));
  for (int64_t i = 0; i < I; ++i)
    for (int64_t j = 0; j < J; ++j)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t l = 0; l < L; ++l) {
          double acc = 0;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t m = 0; m < M; ++m) acc += double(c(n, m, k, l)) * a(i, n) * b(m, j);
          out[size_t(((i * J + j) * K + k) * L + l)] = float(acc);
        }
  return out;
}

// kron(a [p, q], b [r, s]) -> [p r, q s]
std::vector<float> kron_loop(const std::vector<float>& a, int64_t p, int64_t q,
                             const std::vector<float>& b, int64_t r, int64_t s) {
  std::vector<float> out(size_t(p * q * r * s));
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < q; ++j)
      for (int64_t k = 0; k < r; ++k)
        for (int64_t l = 0; l < s; ++l)
          out[size_t((i * r + k) * q * s + j * s + l)] =
              a[size_t(i * q + j)] * b[size_t(k * s + l)];
  return out;
}

std::vector<float> times(std::vector<float> a, const std::vector<float>& b, float s = 1) {
  for (size_t i = 0; i < a.size(); ++i) a[i] *= b[i] * s;
  return a;
}

void expect_near(const Tensor& got, const std::vector<float>& want, const Shape& shape) {
  ASSERT_EQ(got.shape(), shape);
  EXPECT_REL_NEAR(got, Tensor::from_vector(want, shape), 1e-6);
}

Tensor transposed(const Tensor& t) {
  return t.transpose(0, 1).contiguous();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(LycorisModule, DeltasFollowTheFormulasAndScales) {
  const float m = 0.7f;
  {  // LoCon 3x3: up [8, 2, 1, 1] @ down [2, 4, 3, 3], alpha / rows of down
    LoraModule l{rnd({2, 4, 3, 3}, 1), rnd({8, 2, 1, 1}, 2), 1.f};
    EXPECT_EQ(l.dim(), 2);
    EXPECT_EQ(l.scale(), 0.5f);
    expect_near(l.delta(m, {8, 4, 3, 3}, "locon"),
                times(matmul_loop(l.up.view({8, 2}), l.down), std::vector<float>(288, 1), m * 0.5f),
                {8, 4, 3, 3});
  }
  {  // LoCon Tucker: mid [2, 3, 3, 3], up [8, 2, 1, 1], down [3, 4, 1, 1]
    LoraModule l{rnd({3, 4, 1, 1}, 3), rnd({8, 2, 1, 1}, 4), 6.f};
    l.mid = rnd({2, 3, 3, 3}, 5);
    EXPECT_EQ(l.scale(), 2.f);  // rows of down
    expect_near(l.delta(m, {8, 4, 3, 3}, "tucker"),
                times(tucker_loop(l.mid, l.up.view({8, 2}), l.down.view({3, 4})),
                      std::vector<float>(288, 1), m * 2),
                {8, 4, 3, 3});
  }
  {  // LoHa: (w1_a @ w1_b) * (w2_a @ w2_b), [6, 5 * 3 * 3] as the conv's weight
    LoraModule h;
    h.type = LoraType::LoHa;
    h.w1_a = rnd({6, 3}, 6), h.w1_b = rnd({3, 45}, 7), h.w2_a = rnd({6, 2}, 8);
    h.w2_b = rnd({2, 45}, 9), h.alpha = 1.5f;
    EXPECT_EQ(h.scale(), 0.5f);  // rows of w1_b
    expect_near(h.delta(m, {6, 5, 3, 3}, "loha"),
                times(matmul_loop(h.w1_a, h.w1_b), matmul_loop(h.w2_a, h.w2_b), m * 0.5f),
                {6, 5, 3, 3});
    // Tucker: t [r, r, 3, 3], w?_a [r, out], w?_b [r, in]
    LoraModule t;
    t.type = LoraType::LoHa;
    t.w1_a = rnd({3, 6}, 10), t.w1_b = rnd({3, 5}, 11), t.t1 = rnd({3, 3, 3, 3}, 12);
    t.w2_a = rnd({2, 6}, 13), t.w2_b = rnd({2, 5}, 14), t.t2 = rnd({2, 2, 3, 3}, 15);
    t.alpha = 3;
    expect_near(t.delta(m, {6, 5, 3, 3}, "loha_tucker"),
                times(tucker_loop(t.t1, transposed(t.w1_a), t.w1_b),
                      tucker_loop(t.t2, transposed(t.w2_a), t.w2_b), m),
                {6, 5, 3, 3});
  }
  {  // LoKr: kron(w1, w2_a @ w2_b), alpha / rows of w2_b
    LoraModule k;
    k.type = LoraType::LoKr;
    k.w1 = rnd({2, 4}, 16), k.w2_a = rnd({3, 2}, 17), k.w2_b = rnd({2, 5}, 18), k.alpha = 1;
    EXPECT_EQ(k.dim(), 2);
    expect_near(k.delta(m, {6, 20}, "lokr"),
                times(kron_loop(Arr(k.w1).v, 2, 4, matmul_loop(k.w2_a, k.w2_b), 3, 5),
                      std::vector<float>(120, 1), m * 0.5f),
                {6, 20});
    // w1 factored, w2 full 4-D (a conv): no dim from w2, so rows of w1_b
    LoraModule c;
    c.type = LoraType::LoKr;
    c.w1_a = rnd({2, 1}, 19), c.w1_b = rnd({1, 3}, 20), c.w2 = rnd({4, 2, 3, 3}, 21), c.alpha = 2;
    EXPECT_EQ(c.scale(), 2.f);
    expect_near(c.delta(m, {8, 6, 3, 3}, "lokr_conv"),
                times(kron_loop(matmul_loop(c.w1_a, c.w1_b), 2, 3, Arr(c.w2).v, 4, 18),
                      std::vector<float>(432, 1), m * 2),
                {8, 6, 3, 3});
    // both full: scale 1 whatever alpha says
    c.w1 = rnd({2, 3}, 22);
    c.w1_a = c.w1_b = Tensor();
    c.alpha = 5;
    EXPECT_EQ(c.dim(), 0);
    EXPECT_EQ(c.scale(), 1.f);
    // w2 Tucker: t2 [r, r, 3, 3], w2_a [r, c], w2_b [r, d]
    LoraModule t;
    t.type = LoraType::LoKr;
    t.w1 = rnd({2, 2}, 23), t.t2 = rnd({3, 3, 3, 3}, 24), t.w2_a = rnd({3, 4}, 25);
    t.w2_b = rnd({3, 5}, 26), t.alpha = 3;
    expect_near(
        t.delta(m, {8, 10, 3, 3}, "lokr_tucker"),
        times(kron_loop(Arr(t.w1).v, 2, 2, tucker_loop(t.t2, transposed(t.w2_a), t.w2_b), 4, 45),
              std::vector<float>(720, 1), m),
        {8, 10, 3, 3});
  }
  {  // full: diff as is, diff_b times the multiplier only
    LoraModule f;
    f.type = LoraType::Full;
    f.diff = rnd({4, 3}, 27), f.diff_b = rnd({4}, 28), f.alpha = 9;
    EXPECT_EQ(f.scale(), 1.f);
    expect_near(f.delta(m, {4, 3}, "full"), times(Arr(f.diff).v, std::vector<float>(12, 1), m),
                {4, 3});
    expect_near(f.bias_delta(m), times(Arr(f.diff_b).v, std::vector<float>(4, 1), m), {4});
  }
}

TEST(LycorisFile, MixedTypesRoundTrip) {
  models::LoraFile f;
  LoraModule lora{rnd({2, 4, 1, 1}, 1), rnd({8, 2, 1, 1}, 2), 1.f};
  lora.mid = rnd({2, 2, 3, 3}, 3);
  f.modules["lora_unet_a"] = lora;
  LoraModule h;
  h.type = LoraType::LoHa;
  h.w1_a = rnd({6, 3}, 4), h.w1_b = rnd({3, 5}, 5), h.w2_a = rnd({6, 2}, 6);
  h.w2_b = rnd({2, 5}, 7), h.alpha = 2;
  f.modules["lora_unet_b"] = h;
  LoraModule k;
  k.type = LoraType::LoKr;
  k.w1_a = rnd({2, 1}, 8), k.w1_b = rnd({1, 3}, 9), k.w2 = rnd({4, 2, 3, 3}, 10), k.alpha = 2;
  f.modules["lora_te_c"] = k;
  LoraModule d;
  d.type = LoraType::Full;
  d.diff = rnd({4, 3}, 11), d.diff_b = rnd({4}, 12);
  f.modules["lora_unet_d"] = d;
  const std::string path = test::temp_dir() + "/mixed.safetensors";
  models::write_lora_file(path, f, DType::F32);
  const models::LoraFile back = models::read_lora_file(path);
  ASSERT_EQ(back.modules.size(), 4u);
  for (auto& [name, want] : f.modules) {
    SCOPED_TRACE(name);
    const LoraModule& got = back.modules.at(name);
    EXPECT_EQ(got.type, want.type);
    EXPECT_EQ(got.scale(), want.scale());
    const Shape w = want.delta_shape(name);
    EXPECT_REL_NEAR(got.delta(1, w, name), want.delta(1, w, name), 0);
  }
  EXPECT_TRUE(back.modules.at("lora_unet_d").diff_b.defined());
  // Only modules with a dim carry an alpha.
  const io::TensorMap t = io::load_safetensors(path);
  EXPECT_TRUE(t.count("lora_unet_b.alpha"));
  EXPECT_FALSE(t.count("lora_unet_d.alpha"));
  EXPECT_TRUE(t.count("lora_unet_a.lora_mid.weight"));
  EXPECT_TRUE(t.count("lora_te_c.lokr_w1_a"));
}

TEST(LycorisFile, ClearErrorsNamingTheModule) {
  const std::string dir = test::temp_dir();
  const std::string m = "lora_unet_mid_block_attentions_0_proj_in";
  const Tensor a = rnd({4, 2}, 1), b = rnd({2, 4}, 2);
  const std::pair<io::TensorMap, std::vector<const char*>> bad[] = {
      {{{m + ".lora_down.weight", b}, {m + ".lora_up.weight", a}, {m + ".dora_scale", a}},
       {"DoRA is not supported", m.c_str()}},
      {{{m + ".weight", a}, {m + ".on_input", Tensor::full({}, 1)}},
       {"unknown type", m.c_str(), "on_input"}},
      {{{m + ".lora_down.weight", b}, {m + ".hada_w1_a", a}}, {"mix keys", m.c_str(), "hada_w1_a"}},
      {{{m + ".lokr_w1", a}, {m + ".lokr_w2_a", a}}, {"lack a factor", m.c_str(), "no lokr_w2_b"}},
      {{{m + ".lokr_w1_a", a}}, {"lack a factor", "no lokr_w2 or lokr_w2_a + lokr_w2_b"}},
      {{{m + ".hada_w1_a", a}}, {"LoHa", m.c_str(), "no hada_w1_b"}},
      {{{m + ".hada_w1_a", a}, {m + ".hada_w1_b", b}, {m + ".hada_w2_a", a}, {m + ".hada_w2_b", a}},
       {"do not fit together", m.c_str(), "w2_b [4, 2]"}},
      {{{m + ".hada_w1_a", rnd({2, 4}, 3)},
        {m + ".hada_w1_b", rnd({2, 4}, 4)},
        {m + ".hada_t1", rnd({2, 2, 3, 3}, 5)},
        {m + ".hada_w2_a", rnd({2, 4}, 6)},
        {m + ".hada_w2_b", rnd({2, 4}, 7)}},
       {"do not fit together", m.c_str(), "t1 [2, 2, 3, 3]"}},  // t1 without t2
      {{{m + ".lora_down.weight", rnd({2, 4, 1, 1}, 8)},
        {m + ".lora_up.weight", rnd({4, 2, 1, 1}, 9)},
        {m + ".lora_mid.weight", rnd({3, 2, 3, 3}, 10)}},
       {"do not fit together", "mid [3, 2, 3, 3]"}},
      {{{m + ".lokr_w1", a}, {m + ".lokr_w2", b}, {m + ".lokr_w2_b", b}},
       {"do not fit together", m.c_str()}},  // w2 both full and factored
      {{{m + ".diff", a}, {m + ".diff_b", rnd({3}, 11)}}, {"do not fit together", "diff_b [3]"}},
  };
  int i = 0;
  for (auto& [tensors, want] : bad) {
    const std::string path = dir + "/bad" + std::to_string(i++) + ".safetensors";
    io::save_safetensors(path, tensors);
    const std::string e = error_of([&] { models::read_lora_file(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    for (const char* w : want) EXPECT_NE(e.find(w), std::string::npos) << w << " in: " << e;
  }
}

TEST(LycorisMerger, ConvLayersBiasesAndMisfits) {
  auto unet = test::small_random_unet(7);
  std::map<std::string, Tensor> before;
  for (auto& p : unet->named_parameters()) before[p.name] = p.tensor->clone();
  const float mult = 0.7f;
  models::LoraFile f;
  // 3x3 LoCon on a resnet's conv1 (LDM name) and a LoHa on an upsampler's conv (diffusers name)
  LoraModule locon{rnd({2, 8, 3, 3}, 1), rnd({8, 2, 1, 1}, 2), 4.f};
  f.modules["lora_unet_input_blocks_1_0_in_layers_2"] = locon;
  LoraModule h;
  h.type = LoraType::LoHa;
  h.w1_a = rnd({16, 2}, 3), h.w1_b = rnd({2, 144}, 4), h.w2_a = rnd({16, 2}, 5);
  h.w2_b = rnd({2, 144}, 6), h.alpha = 1;
  f.modules["lora_unet_up_blocks_0_upsamplers_0_conv"] = h;
  // full diff with a bias on conv_in
  LoraModule d;
  d.type = LoraType::Full;
  d.diff = rnd({8, 4, 3, 3}, 7), d.diff_b = rnd({8}, 8);
  f.modules["lora_unet_conv_in"] = d;
  models::LoraMerger merger(unet.get(), nullptr);
  merger.merge(f, "f", mult, 1);
  EXPECT_EQ(merger.merged_layers(), 4u);  // three weights and a bias
  std::map<std::string, Tensor> want = {
      {"down_blocks.0.resnets.0.conv1.weight", locon.delta(mult, {8, 8, 3, 3}, "locon")},
      {"up_blocks.0.upsamplers.0.conv.weight", h.delta(mult, {16, 16, 3, 3}, "loha")},
      {"conv_in.weight", d.delta(mult, {8, 4, 3, 3}, "full")},
      {"conv_in.bias", d.bias_delta(mult)}};
  for (auto& p : unet->named_parameters()) {
    SCOPED_TRACE(p.name);
    auto it = want.find(p.name);
    if (it == want.end()) {
      EXPECT_EQ(p.tensor->to_float_vector(), before.at(p.name).to_float_vector());
      continue;
    }
    Tensor changed = Tensor::from_vector(p.tensor->to_float_vector(), p.shape);
    Tensor expect = Tensor::from_vector(before.at(p.name).to_float_vector(), p.shape);
    const auto dv = it->second.to_float_vector();
    auto ev = expect.to_float_vector();
    for (size_t i = 0; i < ev.size(); ++i) ev[i] += dv[i];
    EXPECT_REL_NEAR(changed, Tensor::from_vector(ev, p.shape), 1e-6);
  }

  // Misfits: a LoKr of the wrong size, diff_b for a layer without a bias; nothing changes.
  models::LoraFile bad;
  LoraModule k;
  k.type = LoraType::LoKr;
  k.w1 = rnd({2, 2}, 9), k.w2 = rnd({4, 4}, 10);  // [8, 8] for to_q [8, 8]: fits
  bad.modules["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"] = k;
  k.w2 = rnd({4, 3}, 11);  // [8, 6]: does not fit to_k [8, 8]
  bad.modules["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k"] = k;
  LoraModule nb;
  nb.type = LoraType::Full;
  nb.diff = rnd({8, 8}, 12), nb.diff_b = rnd({8}, 13);
  bad.modules["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_v"] = nb;
  const std::string e = error_of([&] { merger.merge(bad, "bad.safetensors", 1, 1); });
  EXPECT_NE(e.find("2 LoRA modules do not fit"), std::string::npos) << e;
  EXPECT_NE(e.find("attn1_to_k (LoKr [8, 6] for [8, 8])"), std::string::npos) << e;
  EXPECT_NE(e.find("attn1_to_v (diff_b [8] for a layer without bias)"), std::string::npos) << e;
  EXPECT_EQ(merger.merged_layers(), 4u);
  merger.restore();
  for (auto& p : unet->named_parameters())
    EXPECT_EQ(p.tensor->to_float_vector(), before.at(p.name).to_float_vector()) << p.name;
}
