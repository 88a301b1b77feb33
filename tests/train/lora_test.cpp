// LoRA on a small random UNet: a fresh network is the base model, adapters equal merged
// weights, only the adapters get gradients (checked against finite differences), kohya files
// round-trip, and the merger restores the original weights.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "autograd/functions.h"
#include "io/safetensors.h"
#include "models/lora/lora_merge.h"
#include "test_util.h"
#include "train/lora.h"
#include "train/unet_trainer.h"
#include "train_test_util.h"

using namespace diffuse;
namespace F = diffuse::autograd;

namespace {

struct Inputs {
  Tensor x = test::seeded_randn({2, 4, 8, 8}, 100), context = test::seeded_randn({2, 5, 8}, 101);
  std::vector<float> t{30, 600};
};

Tensor run(const models::UNet2DConditionModel& unet, const Inputs& in) {
  F::NoGradGuard ng;
  return unet.forward(in.x, in.t, in.context);
}

// Gives every lora_up random values (a fresh network's are zero), keeping them trainable.
void randomize_up(const train::LoraNetwork& net, uint32_t seed) {
  for (auto& p : net.params())
    if (p.name.ends_with(".lora_up.weight")) {
      *p.tensor = test::seeded_randn(p.shape, ++seed, 0.3f);
      F::set_requires_grad(*p.tensor);
    }
}

train::LoraOptions all_layers() {
  train::LoraOptions o;
  o.rank = 2;
  o.alpha = 3;
  o.projections = o.feed_forward = true;
  return o;
}

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_float_vector() == b.to_float_vector();
}

}  // namespace

TEST(Lora, ChoosesTheLayersAsked) {
  auto unet = test::small_random_unet(1);
  train::LoraNetwork attn(*unet, {});
  // 4 transformers (down level 0, mid, 2 in up level 1) of one block each: attn1 and attn2,
  // 4 projections each
  EXPECT_EQ(attn.modules().size(), 32u);
  EXPECT_EQ(attn.params().size(), 64u);
  EXPECT_EQ(attn.modules()[0], "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q");
  EXPECT_EQ(
      attn.params()[0].name,
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight");
  EXPECT_EQ(attn.params()[0].shape, (Shape{4, 8}));  // [rank, in]
  EXPECT_EQ(attn.params()[1].shape, (Shape{8, 4}));  // [out, rank]
  // Two networks on one layer are refused; after remove() the layers are free again.
  EXPECT_THROW(train::LoraNetwork(*unet, {}), Error);
  attn.remove();
  train::LoraNetwork all(*unet, all_layers());
  EXPECT_EQ(all.modules().size(), 4u * (2 + 8 + 2));
  EXPECT_EQ(all.modules()[0], "down_blocks.0.attentions.0.proj_in");
  EXPECT_EQ(all.params()[0].shape, (Shape{2, 8, 1, 1}));  // proj_in is a 1x1 convolution here
  EXPECT_EQ(all.params()[1].shape, (Shape{8, 2, 1, 1}));
  train::LoraOptions bad;
  bad.rank = 0;
  EXPECT_THROW(train::LoraNetwork(*unet, bad), Error);
}

TEST(Lora, KohyaInitialisation) {
  auto unet = test::small_random_unet(1);
  train::LoraOptions o;
  o.rank = 4;
  o.seed = 5;
  train::LoraNetwork net(*unet, o);
  for (auto& p : net.params()) {
    EXPECT_TRUE(F::requires_grad(*p.tensor));
    const auto v = p.tensor->to_float_vector();
    if (p.name.ends_with("lora_up.weight")) {
      for (float x : v) ASSERT_EQ(x, 0.f) << p.name;
      continue;
    }
    // kaiming_uniform_(a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in
    const float bound = 1.f / std::sqrt(float(p.shape[1]));
    float lo = 1, hi = -1;
    for (float x : v) lo = std::min(lo, x), hi = std::max(hi, x);
    EXPECT_GE(lo, -bound);
    EXPECT_LE(hi, bound);
    EXPECT_GT(hi - lo, bound) << p.name;  // spread over the range, not all zero
  }
  // Seeded: the same seed gives the same matrices.
  net.remove();
  train::LoraNetwork again(*unet, o);
  EXPECT_TRUE(same(*again.params()[0].tensor, *net.params()[0].tensor));
}

TEST(Lora, AdaptersEqualMergedWeights) {
  auto unet = test::small_random_unet(2);
  const Inputs in;
  const Tensor base = run(*unet, in);
  train::LoraNetwork net(*unet, all_layers());
  EXPECT_TRUE(same(run(*unet, in), base)) << "up = 0 must leave the model unchanged";
  randomize_up(net, 10);
  const Tensor adapted = run(*unet, in);
  EXPECT_GT(test::rel_error(adapted, base), 1e-3);
  net.set_multiplier(0);
  EXPECT_TRUE(same(run(*unet, in), base));
  net.set_multiplier(1);

  const models::LoraFile file = net.to_file();
  net.remove();
  EXPECT_TRUE(same(run(*unet, in), base));
  std::vector<Tensor> before;
  for (auto& p : unet->named_parameters()) before.push_back(*p.tensor);
  {
    models::LoraMerger merger(unet.get(), nullptr);
    merger.merge(file, "network", 1, 1);
    EXPECT_EQ(merger.merged_layers(), file.modules.size());
    EXPECT_REL_NEAR(run(*unet, in), adapted, 1e-5);
    merger.restore();
    EXPECT_TRUE(same(run(*unet, in), base));
    // Half the multiplier twice is the whole.
    merger.merge(file, "network", 0.5f, 0);
    merger.merge(file, "network", 0.5f, 0);
    EXPECT_REL_NEAR(run(*unet, in), adapted, 1e-5);
  }  // the merger's end restores
  size_t i = 0;
  for (auto& p : unet->named_parameters())  // the very same tensors are back
    EXPECT_EQ(p.tensor->data<float>(), before[i++].data<float>()) << p.name;

  // Merged for good (to save a merged model): the UNet computes what the adapters did.
  train::LoraNetwork again(*unet, all_layers());
  again.load_kohya([&] {
    const std::string path = test::temp_dir() + "/merge_into.safetensors";
    models::write_lora_file(path, file, DType::F32);
    return path;
  }());
  again.merge_into_unet(0.5f);
  const Tensor half = run(*unet, in);
  EXPECT_GT(test::rel_error(half, base), 1e-4);
  EXPECT_LT(test::rel_error(half, adapted), test::rel_error(base, adapted));
  models::LoraMerger rest(unet.get(), nullptr);
  rest.merge(file, "network", 0.5f, 0);  // the other half
  EXPECT_REL_NEAR(run(*unet, in), adapted, 1e-5);
}

TEST(Lora, MergesIntoHalfPrecisionWeights) {
  auto unet = test::small_random_unet(3);
  for (auto& p : unet->named_parameters())  // as the bf16 pipeline holds them
    if (p.tensor->dim() >= 2) *p.tensor = p.tensor->to(DType::BF16);
  const Inputs in;
  const Tensor base = run(*unet, in);
  train::LoraNetwork net(*unet, all_layers());
  randomize_up(net, 20);
  const Tensor adapted = run(*unet, in);
  const models::LoraFile file = net.to_file();
  net.remove();
  models::LoraMerger merger(unet.get(), nullptr);
  merger.merge(file, "network", 1, 1);
  for (auto& p : unet->named_parameters())
    if (p.tensor->dim() >= 2) {
      EXPECT_EQ(p.tensor->dtype(), DType::BF16) << p.name;
    }
  EXPECT_REL_NEAR(run(*unet, in), adapted, 2e-2);  // bf16 rounding of the merged weights
  merger.restore();
  EXPECT_TRUE(same(run(*unet, in), base));
}

TEST(Lora, GradientsReachOnlyTheAdapters) {
  auto unet = test::small_random_unet(4);
  train::LoraNetwork net(*unet, all_layers());
  randomize_up(net, 30);
  const Inputs in;
  const Tensor r = test::seeded_randn({2, 4, 8, 8}, 7);
  auto objective = [&] {  // sum(out * r), in double
    const auto y = run(*unet, in).to_float_vector(), rv = r.to_float_vector();
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += double(y[i]) * rv[i];
    return s;
  };
  F::backward(F::sum(F::mul(unet->forward(in.x, in.t, in.context), r)));
  for (auto& p : unet->named_parameters()) {
    EXPECT_FALSE(F::requires_grad(*p.tensor)) << p.name;
    EXPECT_FALSE(F::grad(*p.tensor).defined()) << p.name;
  }
  const auto params = net.params();
  for (auto& p : params) {
    const Tensor g = F::grad(*p.tensor);
    ASSERT_TRUE(g.defined()) << p.name;
    double n = 0;
    for (float v : g.to_float_vector()) n += double(v) * v;
    EXPECT_GT(n, 0) << p.name;
  }
  // Central differences on a few elements of a few matrices (a conv's down, a linear's up, the
  // last).
  double num2 = 0, diff2 = 0;
  std::mt19937 pick(3);
  for (size_t k : {size_t(0), size_t(5), params.size() - 1}) {
    Tensor& w = *params[k].tensor;
    const std::vector<float> g = F::grad(w).to_float_vector();
    for (int n = 0; n < 3; ++n) {
      const size_t i = pick() % size_t(w.numel());
      float* d = w.data<float>();
      const float keep = d[i], eps = 1e-2f;
      d[i] = keep + eps;
      const double up = objective();
      d[i] = keep - eps;
      const double down = objective();
      d[i] = keep;
      const double numeric = (up - down) / (2.0 * eps);
      num2 += numeric * numeric;
      diff2 += (numeric - g[i]) * (numeric - g[i]);
    }
  }
  EXPECT_GT(num2, 0);
  EXPECT_LT(std::sqrt(diff2 / num2), 2e-3);
}

TEST(Lora, TrainerTrainsOnlyTheNetwork) {
  auto unet = test::small_random_unet(5);
  std::vector<Tensor> base;
  for (auto& p : unet->named_parameters()) base.push_back(p.tensor->clone());
  train::LoraNetwork net(*unet, all_layers());
  train::UNetTrainOptions o;
  o.adamw.lr = 5e-2f;
  train::UNetTrainer tr(*unet, train::NoiseSchedule::stable_diffusion(), o, net.params());
  const Tensor x0 = test::seeded_randn({2, 4, 8, 8}, 200), ctx = test::seeded_randn({2, 5, 8}, 201),
               noise = test::seeded_randn({2, 4, 8, 8}, 202);
  std::vector<float> losses;
  for (int i = 0; i < 12; ++i) losses.push_back(tr.step(x0, ctx, noise, {100, 700}).loss);
  // A low-rank change of the attention layers of a random UNet fits the noise only in part.
  EXPECT_LT(losses.back(), 0.96f * losses.front()) << losses.front() << " -> " << losses.back();
  size_t i = 0;
  for (auto& p : unet->named_parameters()) EXPECT_TRUE(same(*p.tensor, base[i++])) << p.name;
  // A parameter list with a frozen tensor is refused.
  Tensor frozen = Tensor::zeros({2});
  EXPECT_THROW(train::UNetTrainer(*unet, train::NoiseSchedule::stable_diffusion(), o,
                                  {{"frozen", &frozen, {2}}}),
               Error);
}

TEST(Lora, KohyaFileRoundTrip) {
  auto unet = test::small_random_unet(6);
  train::LoraNetwork net(*unet, all_layers());
  randomize_up(net, 40);
  const std::string dir = test::temp_dir();
  net.save_kohya(dir + "/net32.safetensors", {{"ss_training_comment", "test"}}, DType::F32);
  net.save_kohya(dir + "/net16.safetensors");

  const models::LoraFile want = net.to_file();
  const models::LoraFile f32 = models::read_lora_file(dir + "/net32.safetensors");
  const models::LoraFile f16 = models::read_lora_file(dir + "/net16.safetensors");
  ASSERT_EQ(f32.modules.size(), want.modules.size());
  for (auto& [name, m] : want.modules) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f32.modules.count(name));
    EXPECT_TRUE(same(f32.modules.at(name).down, m.down));  // bitwise
    EXPECT_TRUE(same(f32.modules.at(name).up, m.up));
    EXPECT_EQ(f32.modules.at(name).alpha, 3.f);
    EXPECT_EQ(f16.modules.at(name).down.dtype(), DType::F16);
    EXPECT_TRUE(same(f16.modules.at(name).up, m.up.to(DType::F16)));
  }
  EXPECT_EQ(f32.metadata.at("ss_network_module"), "networks.lora");
  EXPECT_EQ(f32.metadata.at("ss_network_dim"), "2");
  EXPECT_EQ(f32.metadata.at("ss_network_alpha"), "3");
  EXPECT_EQ(f32.metadata.at("ss_base_model_version"), "sd_v1");
  EXPECT_EQ(f32.metadata.at("ss_output_name"), "net32");
  EXPECT_EQ(f32.metadata.at("ss_training_comment"), "test");
  // Every key is kohya's: <name>.lora_down.weight / .lora_up.weight / .alpha (a scalar).
  for (auto& [key, t] : io::load_safetensors(dir + "/net32.safetensors")) {
    EXPECT_TRUE(key.starts_with("lora_unet_")) << key;
    if (key.ends_with(".alpha")) {
      EXPECT_EQ(t.dim(), 0) << key;
    }
  }

  // Loading into a fresh network (other seed) gives the saved matrices bitwise.
  net.remove();
  train::LoraOptions o = all_layers();
  o.seed = 9;
  train::LoraNetwork other(*unet, o);
  other.load_kohya(dir + "/net32.safetensors");
  const auto a = net.params(), b = other.params();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_TRUE(same(*a[i].tensor, *b[i].tensor)) << a[i].name;
    EXPECT_TRUE(F::requires_grad(*b[i].tensor));
  }
  // A network of another rank, or of other layers, does not load it.
  other.remove();
  train::LoraOptions r3 = all_layers();
  r3.rank = 3;
  train::LoraNetwork wrong_rank(*unet, r3);
  try {
    wrong_rank.load_kohya(dir + "/net32.safetensors");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank or shape differs"), std::string::npos) << e.what();
  }
  wrong_rank.remove();
  train::LoraOptions fewer = all_layers();
  fewer.feed_forward = false;
  train::LoraNetwork wrong_layers(*unet, fewer);
  try {
    wrong_layers.load_kohya(dir + "/net32.safetensors");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ff_net_2 (not a layer of this network)"),
              std::string::npos)
        << e.what();
  }
  wrong_layers.remove();
  // A LyCORIS module of another type for one of the network's layers does not load either.
  models::LoraFile loha = models::read_lora_file(dir + "/net32.safetensors");
  models::LoraModule& first = loha.modules.begin()->second;
  const int64_t out = first.up.size(0), in = first.down.size(1);
  models::LoraModule h;
  h.type = models::LoraType::LoHa;
  h.w1_a = h.w2_a = Tensor::full({out, 2}, 0.1f);
  h.w1_b = h.w2_b = Tensor::full({2, in}, 0.1f);
  h.alpha = 2;
  first = h;
  models::write_lora_file(dir + "/loha.safetensors", loha);
  train::LoraNetwork third(*unet, all_layers());
  try {
    third.load_kohya(dir + "/loha.safetensors");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(loha.modules.begin()->first + " (a LoHa module"),
              std::string::npos)
        << e.what();
  }
}
