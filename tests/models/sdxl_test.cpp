// SDXL base and refiner modules (both text encoders, the UNet with its added conditioning, the
// VAE) against the reference, for every form each model comes in, built from io::open_model and
// the configs alone (a single file takes what its shapes lack from its own diffusers folder).
// The models are the reference folders whose reference.json kind is "sdxl" or "sdxl-refiner".
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "io/mmap_file.h"
#include "io/model_files.h"
#include "io/model_writer.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/clip/clip_text_model.h"
#include "models/unet/unet_2d_condition.h"
#include "models/vae/autoencoder_kl.h"
#include "nn/functional.h"
#include "tensor_maps_testing.h"
#include "test_util.h"

using namespace diffuse;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using test::expect_same_components;
using test::expect_same_tensors;
using test::fresh_dir;
using test::same_bits;

struct SdxlForm {
  std::string model, dir, path, kind;  // kind: diffusers, safetensors, ckpt, gguf
  std::string config_dir;              // the model's own diffusers folder
  bool quantized() const { return kind == "gguf"; }
};
void PrintTo(const SdxlForm& f, std::ostream* os) {
  *os << f.model << " (" << f.kind << ")";
}

json read_json(const fs::path& p) {
  return json::parse(io::read_text_file(p.string()));
}

bool is_sdxl_kind(const std::string& kind) {
  return kind == "sdxl" || kind == "sdxl-refiner";
}

std::vector<SdxlForm> sdxl_forms() {
  std::vector<SdxlForm> out;
  const std::string root = test::reference_dir();
  if (root.empty() || !fs::is_directory(root)) return out;
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && fs::is_regular_file(e.path() / "reference.json") &&
        fs::is_regular_file(e.path() / "reference.safetensors"))
      dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  for (const fs::path& dir : dirs) {
    const json ref = read_json(dir / "reference.json");
    if (!is_sdxl_kind(ref.value("kind", ""))) continue;
    const std::string model = dir.filename().string();
    const fs::path folder = dir / "diffusers";
    const std::string cfg = fs::is_regular_file(folder / "model_index.json") ? folder.string() : "";
    if (!cfg.empty()) out.push_back({model, dir.string(), cfg, "diffusers", cfg});
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& p : files) {
      const std::string ext = p.extension().string();
      if (p.filename() == "reference.safetensors") continue;
      if (ext == ".safetensors" || ext == ".ckpt" || ext == ".gguf")
        out.push_back({model, dir.string(), p.string(), ext.substr(1), cfg});
    }
  }
  return out;
}

std::string form_name(const SdxlForm& f) {
  std::string s = f.model + "_" + f.kind;
  for (char& c : s)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

// fp32 forms within 1e-4; q8_0 weights as the other golden tests allow them.
double tolerance(const SdxlForm& f) {
  return f.quantized() ? 3e-2 : 1e-4;
}

// A component's config: the files' own, else the config folder's.
json config_of(const json& own, const SdxlForm& f, const char* component) {
  if (!own.is_null()) return own;
  const fs::path p = fs::path(f.config_dir) / component / "config.json";
  return fs::is_regular_file(p) ? read_json(p) : json();
}

struct Loaded {
  io::ModelFiles files;
  io::TensorMap ref;
  json reference_json;
};

Loaded load(const SdxlForm& f) {
  Loaded l{io::open_model(f.path), io::load_safetensors(f.dir + "/reference.safetensors"),
           read_json(fs::path(f.dir) / "reference.json")};
  return l;
}

std::unique_ptr<models::ClipTextModel> text_encoder(const Loaded& l, const SdxlForm& f,
                                                    bool second) {
  const io::TensorMap& w = second ? l.files.text_encoder_2 : l.files.text_encoder;
  if (w.empty()) return nullptr;
  const json cfg = config_of(second ? l.files.text_encoder_2_config : l.files.text_encoder_config,
                             f, second ? "text_encoder_2" : "text_encoder");
  auto te = std::make_unique<models::ClipTextModel>(models::ClipTextConfig::from_json(cfg));
  te->load_state_dict(w, str(second ? "text_encoder_2" : "text_encoder", " of ", f.path));
  return te;
}

std::unique_ptr<models::UNet2DConditionModel> unet(const Loaded& l, const SdxlForm& f) {
  auto u = std::make_unique<models::UNet2DConditionModel>(
      models::UNetConfig::from_json(config_of(l.files.unet_config, f, "unet")));
  u->load_state_dict(l.files.unet, "unet of " + f.path);
  return u;
}

class SdxlGolden : public testing::TestWithParam<SdxlForm> {};

// text.* (text_encoder) and text2.* (text_encoder_2): every hidden state, the final one,
// the pooled output, the projected one.
TEST_P(SdxlGolden, TextEncodersMatch) {
  const SdxlForm& f = GetParam();
  const Loaded l = load(f);
  const double tol = tolerance(f);
  int encoders = 0;
  for (const bool second : {false, true}) {
    const std::string key = second ? "text2." : "text.";
    auto te = text_encoder(l, f, second);
    if (!l.ref.count(key + "input_ids")) {
      EXPECT_EQ(te, nullptr) << "the model has a " << key << " encoder the reference lacks";
      continue;
    }
    ASSERT_NE(te, nullptr) << f.path << " lacks the encoder of " << key << "*";
    ++encoders;
    const auto out = te->forward(l.ref.at(key + "input_ids"));
    for (size_t i = 0; i < out.hidden_states.size(); ++i) {
      SCOPED_TRACE(key + "hidden_states." + std::to_string(i));
      EXPECT_REL_NEAR(out.hidden_states[i], l.ref.at(key + "hidden_states." + std::to_string(i)),
                      tol);
    }
    EXPECT_FALSE(l.ref.count(key + "hidden_states." + std::to_string(out.hidden_states.size())))
        << "the reference has more hidden states than the model";
    EXPECT_REL_NEAR(out.last_hidden_state, l.ref.at(key + "last_hidden_state"), tol);
    if (l.ref.count(key + "pooler_output"))
      EXPECT_REL_NEAR(out.pooler_output, l.ref.at(key + "pooler_output"), tol);
    if (second) {
      ASSERT_TRUE(out.text_embeds.defined()) << "text_encoder_2 has no projection";
      EXPECT_REL_NEAR(out.text_embeds, l.ref.at("text2.text_embeds"), tol);
    } else {
      EXPECT_FALSE(out.text_embeds.defined());
    }
  }
  EXPECT_GT(encoders, 0);
}

// pipe.prompt_embeds: the penultimate block of each encoder without the final norm
// (encode(ids, 2, false)), concatenated; the pooled one is text_encoder_2's text_embeds.
TEST_P(SdxlGolden, PromptEmbedsAreThePenultimateBlocksConcatenated) {
  const SdxlForm& f = GetParam();
  const Loaded l = load(f);
  auto te1 = text_encoder(l, f, false), te2 = text_encoder(l, f, true);
  ASSERT_NE(te2, nullptr);
  const struct {
    const char *embeds, *pooled;
    int64_t row;
  } cases[] = {{"pipe.prompt_embeds", "pipe.pooled_prompt_embeds", 0},
               {"pipe.negative_prompt_embeds", "pipe.negative_pooled_prompt_embeds", 1}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.embeds);
    std::vector<Tensor> parts;
    if (te1) {
      const Tensor ids = l.ref.at("text.input_ids").slice(0, c.row, c.row + 1);  // [1, 77]
      parts.push_back(te1->encode(ids, 2, false));
    }
    const Tensor ids2 = l.ref.at("text2.input_ids").slice(0, c.row, c.row + 1);
    parts.push_back(te2->encode(ids2, 2, false));
    const Tensor embeds = parts.size() == 1 ? parts[0] : nn::F::cat(parts, 2);  // [1, 77, D1+D2]
    EXPECT_REL_NEAR(embeds, l.ref.at(c.embeds), tolerance(f));
    EXPECT_REL_NEAR(te2->forward(ids2).text_embeds, l.ref.at(c.pooled), tolerance(f));
  }
}

TEST_P(SdxlGolden, UNetWithAddedConditioningMatchesAtEveryTimestep) {
  const SdxlForm& f = GetParam();
  const Loaded l = load(f);
  auto u = unet(l, f);
  ASSERT_TRUE(u->config().has_text_time());
  const Tensor& input = l.ref.at("unet.input");
  const std::string prefix = "unet.output.t";
  int checked = 0;
  for (const auto& [key, expected] : l.ref) {
    if (!key.starts_with(prefix)) continue;
    SCOPED_TRACE(key);
    const float t = std::stof(key.substr(prefix.size()));
    const Tensor out =
        u->forward(input, std::vector<float>(size_t(input.size(0)), t), l.ref.at("unet.context"),
                   l.ref.at("unet.text_embeds"), l.ref.at("unet.time_ids"));
    EXPECT_REL_NEAR(out, expected, tolerance(f));
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no unet.output.t* keys";
}

TEST_P(SdxlGolden, UNetAddedConditioningErrorsAreClear) {
  const SdxlForm& f = GetParam();
  const Loaded l = load(f);
  auto u = unet(l, f);
  const Tensor& x = l.ref.at("unet.input");
  const Tensor& ctx = l.ref.at("unet.context");
  const Tensor& pooled = l.ref.at("unet.text_embeds");
  const Tensor& ids = l.ref.at("unet.time_ids");
  const std::vector<float> t(size_t(x.size(0)), 10.f);
  auto message = [&](const Tensor& te, const Tensor& ti) {
    try {
      u->forward(x, t, ctx, te, ti);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({}, ids).find("text_embeds"), std::string::npos) << message({}, ids);
  EXPECT_NE(message(pooled, {}).find("time_ids"), std::string::npos) << message(pooled, {});
  // one time id too many: the added embedding's width does not fit
  const Tensor more = nn::F::cat({ids, ids.slice(1, 0, 1)}, 1);  // [B, n + 1]
  EXPECT_NE(message(pooled, more).find("add_embedding"), std::string::npos)
      << message(pooled, more);
  // a batch that differs from the sample's
  EXPECT_THROW(u->forward(x, t, ctx, pooled.slice(0, 0, 1), ids), Error);
}

// The added path trains: the gradient reaches add_embedding and text_embeds, and agrees with a
// finite difference of the loss along it.
TEST_P(SdxlGolden, AddedConditioningIsDifferentiable) {
  const SdxlForm& f = GetParam();
  if (f.kind != "diffusers") GTEST_SKIP() << "checked on the diffusers form";
  const Loaded l = load(f);
  auto u = unet(l, f);
  // the positive row of the reference call
  const Tensor x = l.ref.at("unet.input").slice(0, 1, 2);
  const Tensor ctx = l.ref.at("unet.context").slice(0, 1, 2);
  const Tensor ids = l.ref.at("unet.time_ids").slice(0, 1, 2);
  const Tensor ref_te = l.ref.at("unet.text_embeds").slice(0, 1, 2);
  const std::vector<float> t(1, 500.f);
  std::vector<float> w(size_t(x.numel()));
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * float(i));
  const Tensor weights = Tensor::from_vector(w, x.shape());
  auto loss = [&](const Tensor& te) {  // sum(unet(...) * weights)
    return nn::F::sum(nn::F::mul(u->forward(x, t, ctx, te, ids), weights));
  };
  Tensor te = Tensor::from_vector(ref_te.to_float_vector(), ref_te.shape());
  nn::F::set_requires_grad(te);
  nn::F::set_requires_grad(u->add_embedding->linear_1.weight);
  nn::F::backward(loss(te));
  const Tensor g = nn::F::grad(te);
  ASSERT_TRUE(g.defined());
  ASSERT_TRUE(nn::F::grad(u->add_embedding->linear_1.weight).defined());
  const std::vector<float> gv = g.to_float_vector();
  double norm = 0;
  for (float v : gv) norm += double(v) * v;
  norm = std::sqrt(norm);
  ASSERT_GT(norm, 0);
  // d loss / d eps along the unit gradient direction is ||g||
  const float eps = 1e-2f;
  std::vector<float> plus = ref_te.to_float_vector(), minus = plus;
  for (size_t i = 0; i < gv.size(); ++i) {
    plus[i] += eps * float(gv[i] / norm);
    minus[i] -= eps * float(gv[i] / norm);
  }
  nn::F::NoGradGuard no_grad;
  const double lp = loss(Tensor::from_vector(plus, ref_te.shape())).to_float_vector()[0];
  const double lm = loss(Tensor::from_vector(minus, ref_te.shape())).to_float_vector()[0];
  EXPECT_NEAR((lp - lm) / (2 * eps), norm, 2e-2 * norm);
}

TEST_P(SdxlGolden, VaeMatches) {
  const SdxlForm& f = GetParam();
  const Loaded l = load(f);
  const json cfg = config_of(l.files.vae_config, f, "vae");
  const auto c = models::VaeConfig::from_json(cfg);
  EXPECT_FLOAT_EQ(c.scaling_factor, l.reference_json.at("vae_scaling_factor").get<float>());
  models::AutoencoderKL vae(c);
  vae.load_state_dict(l.files.vae, "vae of " + f.path);
  int checked = 0;
  if (l.ref.count("vae.encode.mean")) {
    const auto d = vae.encode(l.ref.at("vae.image"));
    EXPECT_REL_NEAR(d.mean, l.ref.at("vae.encode.mean"), tolerance(f));
    EXPECT_REL_NEAR(d.logvar, l.ref.at("vae.encode.logvar"), tolerance(f));
    ++checked;
  }
  if (l.ref.count("vae.decode.input")) {
    EXPECT_REL_NEAR(vae.decode(l.ref.at("vae.decode.input")), l.ref.at("vae.decode.output"),
                    tolerance(f));
    ++checked;
  }
  if (!checked) {
    // The refiner's reference holds no VAE outputs: its VAE is the base's (the same weights),
    // checked there. It still has to run on the reference image.
    const auto d = vae.encode(l.ref.at("vae.image"));
    EXPECT_EQ(d.mean.size(1), c.latent_channels);
  }
}

// What io::open_model makes of each form: SDXL's components and nothing else.
TEST_P(SdxlGolden, OpensWithBothTextEncoderSlots) {
  const SdxlForm& f = GetParam();
  const io::ModelFiles m = io::open_model(f.path);
  const json ref = read_json(fs::path(f.dir) / "reference.json");
  const bool refiner = ref.at("kind") == "sdxl-refiner";
  EXPECT_FALSE(m.unet.empty());
  EXPECT_FALSE(m.vae.empty());
  EXPECT_FALSE(m.text_encoder_2.empty());
  EXPECT_EQ(m.text_encoder.empty(), refiner);
  EXPECT_EQ(m.text_encoder_2.count("text_projection.weight"), 1u);
  EXPECT_EQ(m.dropped_text_layers, 0);
  if (m.layout == io::ModelLayout::SingleFile) {
    EXPECT_EQ(m.text_layout, io::TextEncoderLayout::Conditioner);
  } else {
    EXPECT_TRUE(m.text_encoder_2_config.is_object());
    EXPECT_FALSE(m.tokenizer_2_vocab.empty());
    EXPECT_FALSE(m.tokenizer_2_merges.empty());
    EXPECT_EQ(m.tokenizer_2_pad_token, "!");
    EXPECT_EQ(m.tokenizer_vocab.empty(), refiner);
  }
}

// open -> single file (SDXL's conditioner layout) -> open: the same canonical tensors; written
// from a single file, it holds the source's tensors (less those the loader ignores: the position
// ids, logit_scale) with the same bytes.
TEST_P(SdxlGolden, SingleFileRoundTrip) {
  const SdxlForm& f = GetParam();
  const io::ModelFiles files = io::open_model(f.path);
  const std::string out = fresh_dir("single-" + form_name(f)) + "/model.safetensors";
  io::save_model(files, out, io::ModelLayout::SingleFile);
  const io::ModelFiles back = io::open_model(out);
  expect_same_components(back, files);
  EXPECT_EQ(back.text_layout, io::TextEncoderLayout::Conditioner);
  EXPECT_TRUE(back.ignored.empty());
  if (f.kind != "safetensors") return;
  const io::TensorMap source = io::load_weights(f.path);
  const io::TensorMap written = io::load_safetensors(out);
  const std::set<std::string> ignored(files.ignored.begin(), files.ignored.end());
  size_t compared = 0;
  for (const auto& [name, t] : source) {
    if (ignored.count(name)) continue;
    auto it = written.find(name);
    ASSERT_NE(it, written.end()) << name << " was not written back";
    EXPECT_TRUE(same_bits(it->second, t)) << name;
    ++compared;
  }
  EXPECT_EQ(compared, written.size()) << "the written file holds tensors the source did not";
}

// open -> diffusers folder -> open: the same tensors, configs and tokenizers; a single file
// takes its configs from its own diffusers folder (save_model does not infer them).
TEST_P(SdxlGolden, DiffusersFolderRoundTrip) {
  const SdxlForm& f = GetParam();
  io::ModelFiles files = io::open_model(f.path);
  if (files.layout == io::ModelLayout::SingleFile) {
    const io::ModelFiles folder = io::open_model(f.config_dir);
    files.unet_config = folder.unet_config;
    files.vae_config = folder.vae_config;
    files.text_encoder_config = folder.text_encoder_config;
    files.text_encoder_2_config = folder.text_encoder_2_config;
  }
  const std::string out = fresh_dir("folder-" + form_name(f)) + "/model";
  io::save_model(files, out, io::ModelLayout::DiffusersFolder);
  const io::ModelFiles back = io::open_model(out);
  expect_same_components(back, files);
  EXPECT_EQ(back.text_encoder_2_config, files.text_encoder_2_config);
  EXPECT_EQ(back.tokenizer_2_vocab, files.tokenizer_2_vocab);
  EXPECT_EQ(back.tokenizer_2_merges, files.tokenizer_2_merges);
  EXPECT_EQ(back.tokenizer_2_pad_token, files.tokenizer_2_pad_token);
  const bool refiner = files.text_encoder.empty();
  EXPECT_EQ(fs::is_directory(fs::path(out) / "text_encoder"), !refiner);
  EXPECT_TRUE(fs::is_directory(fs::path(out) / "text_encoder_2"));
  const std::string pipeline = back.model_index.value("_class_name", "");
  if (files.layout == io::ModelLayout::DiffusersFolder) {
    EXPECT_EQ(back.model_index, files.model_index);
  } else {
    EXPECT_EQ(pipeline, refiner ? "StableDiffusionXLImg2ImgPipeline" : "StableDiffusionXLPipeline");
  }
}

TEST(SdxlGoldenSet, HasModels) {
  if (sdxl_forms().empty())
    GTEST_SKIP() << "no sdxl / sdxl-refiner reference models in " << test::reference_dir();
  std::set<std::string> kinds;
  for (const SdxlForm& f : sdxl_forms()) kinds.insert(f.kind);
  EXPECT_TRUE(kinds.count("diffusers"));
  EXPECT_TRUE(kinds.count("safetensors"));
}

INSTANTIATE_TEST_SUITE_P(Forms, SdxlGolden, testing::ValuesIn(sdxl_forms()),
                         [](const auto& i) { return form_name(i.param); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SdxlGolden);

}  // namespace
