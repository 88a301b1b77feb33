// diffuse train on tiny models and a few generated images: a run killed with SIGKILL and
// resumed gives the same loss curve and weights as an uninterrupted one; the checkpoints load
// with `diffuse generate` and io::open_model; VAE and CLIP training lower their loss; errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "io/image.h"
#include "io/mmap_file.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/clip/clip_text_model.h"
#include "models/vae/autoencoder_kl.h"
#include "ops/ops.h"
#include "test_util.h"
#include "train/dataset.h"
#include "train/r_precision.h"
#include "train_test_util.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

// Four small images of different sizes (one RGBA) with captions, made once.
std::string make_data() {
  const std::string dir = test::temp_dir() + "/train-data";
  if (fs::exists(dir)) return dir;
  fs::create_directories(dir);
  const char* words[] = {"red stripes", "green dots", "blue waves", "gray squares"};
  for (int k = 0; k < 4; ++k) {
    const int w = 72 + 8 * k, h = 64 + 4 * (3 - k), c = k == 3 ? 4 : 3;
    io::Image img{w, h, c, std::vector<uint8_t>(size_t(w * h * c))};
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int ch = 0; ch < c; ++ch)
          img.pixels[size_t((y * w + x) * c + ch)] =
              uint8_t(ch == 3 ? 128 + x : (x * (ch + 1) * (k + 1) + y * (3 - ch) + 50 * k) % 256);
    const std::string name = dir + "/img" + std::to_string(k);
    io::save_png(name + ".png", img);
    std::ofstream(name + ".txt") << "a picture of " << words[k];
  }
  return dir;
}

// The step,epoch,loss,lr,grad_norm columns of a CSV log (seconds differ between runs).
std::vector<std::string> log_rows(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::vector<std::string> rows;
  std::getline(in, line);
  EXPECT_EQ(line, "step,epoch,loss,lr,grad_norm,seconds");
  while (std::getline(in, line)) rows.push_back(line.substr(0, line.rfind(',')));
  return rows;
}

std::vector<double> losses(const std::string& path) {
  std::vector<double> out;
  for (const std::string& r : log_rows(path)) {
    std::stringstream ss(r);
    std::string cell;
    for (int i = 0; i < 3; ++i) std::getline(ss, cell, ',');
    out.push_back(std::stod(cell));
  }
  return out;
}

// Data rows in a log being written (0 while absent).
size_t log_rows_quiet(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty() && line.back() != 's';
  return n;
}

double mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / double(to - from);
}

void expect_same_tensors(const io::TensorMap& a, const io::TensorMap& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << what << ": " << name;
    EXPECT_EQ(test::rel_error(t.to(DType::F32), b.at(name).to(DType::F32)), 0.0)
        << what << ": " << name;
  }
}

std::string unet_args(const std::string& model, const std::string& out) {
  return " train unet -m " + model + " --data " + make_data() + " -o " + out +
         " --resolution 64 --batch-size 1 --grad-accum 2 --steps 4 --save-every 2 --lr 1e-3"
         " --lr-scheduler cosine --warmup-steps 1 --ema --seed 3 -t 1 -q";
}

}  // namespace

TEST(TrainCli, KilledAndResumedRunMatchesUninterruptedRun) {
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string dir = test::temp_dir();
  const std::string a = dir + "/whole", b = dir + "/killed";
  std::string out;
  ASSERT_EQ(test::run_command(test::cli_path() + unet_args(model, a) + " 2>&1", &out), 0) << out;

  // The same run, killed after step 3 (logged after checkpoint-2, before checkpoint-4), then
  // resumed: step 3 is run again from checkpoint-2 and its first log row dropped.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c",
          ("exec " + test::cli_path() + unet_args(model, b) + " 2>/dev/null").c_str(),
          (char*)nullptr);
    _exit(127);
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (log_rows_quiet(b + "/log.csv") < 3 &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before it was killed";
  ASSERT_FALSE(fs::exists(b + "/checkpoint-4"));
  ASSERT_TRUE(fs::exists(b + "/checkpoint-2"));
  EXPECT_EQ(log_rows(b + "/log.csv").size(), 3u);
  ASSERT_EQ(test::run_command(test::cli_path() + unet_args(model, b) + " --resume 2>&1", &out), 0)
      << out;
  EXPECT_NE(out.find("resuming from"), std::string::npos) << out;

  const auto ra = log_rows(a + "/log.csv"), rb = log_rows(b + "/log.csv");
  ASSERT_EQ(ra.size(), 4u);
  EXPECT_EQ(ra, rb);  // bitwise: loss, lr and gradient norm of every step, no duplicate rows
  for (const char* f : {"/unet/diffusion_pytorch_model.safetensors", "/training_state.safetensors"})
    expect_same_tensors(io::load_safetensors(a + "/checkpoint-4" + f),
                        io::load_safetensors(b + "/checkpoint-4" + f), f);
  // --keep 2 keeps both; last names the newest.
  EXPECT_TRUE(fs::exists(a + "/checkpoint-2"));
  EXPECT_TRUE(fs::exists(a + "/checkpoint-4"));
  std::ifstream last(a + "/last");
  std::string name;
  last >> name;
  EXPECT_EQ(name, "checkpoint-4");
  // A resume of a finished run does nothing; other settings are refused.
  ASSERT_EQ(test::run_command(test::cli_path() + unet_args(model, a) + " --resume 2>&1", &out), 0)
      << out;
  EXPECT_EQ(log_rows(a + "/log.csv"), ra);
  EXPECT_NE(test::run_command(
                test::cli_path() + unet_args(model, a) + " --resume --weight-decay 0.5 2>&1", &out),
            0);
  EXPECT_NE(out.find("other settings"), std::string::npos) << out;
  EXPECT_NE(test::run_command(test::cli_path() + unet_args(model, a) + " 2>&1", &out), 0);
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
}

TEST(TrainCli, UNetCheckpointLoadsAsAPipelineAndASingleFile) {
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string o = test::temp_dir() + "/unet-load";
  std::string out;
  ASSERT_EQ(
      test::run_command(test::cli_path() + " train unet -m " + model + " --data " + make_data() +
                            " -o " + o + " --resolution 64 --steps 2 -t 1 -q 2>&1",
                        &out),
      0)
      << out;
  const std::string ck = o + "/checkpoint-2";
  const auto folder = io::open_model(ck), single = io::open_model(ck + "/model.safetensors");
  EXPECT_EQ(folder.layout, io::ModelLayout::DiffusersFolder);
  expect_same_tensors(folder.unet, single.unet, "unet");
  expect_same_tensors(folder.vae, single.vae, "vae");
  expect_same_tensors(folder.text_encoder, single.text_encoder, "text encoder");
  // The trained UNet differs from the starting one; the frozen VAE does not.
  const auto base = io::open_model(model);
  expect_same_tensors(folder.vae, base.vae, "frozen vae");
  EXPECT_GT(test::rel_error(folder.unet.at("conv_in.weight"),
                            base.unet.at("conv_in.weight").to(DType::F32)),
            0);
  // The state's weights are the folder's (no EMA).
  const auto state = io::load_safetensors(ck + "/training_state.safetensors");
  EXPECT_EQ(test::rel_error(state.at("param.conv_in.weight"), folder.unet.at("conv_in.weight")), 0);
  for (const std::string& m : {ck, ck + "/model.safetensors"}) {
    // A single file does not record head counts: the tiny model's come from the folder.
    const std::string cfg = m == ck ? "" : " --config " + ck;
    ASSERT_EQ(test::run_command(test::cli_path() + " generate -m " + m + cfg +
                                    " -p \"a picture\" -W 64 -H 64 --steps 2 -s 1 -t 1 -q -o " + o +
                                    "/g.png 2>&1",
                                &out),
              0)
        << m << "\n"
        << out;
    const io::Image img = io::load_image(o + "/g.png");
    EXPECT_EQ(img.width, 64);
  }
}

TEST(TrainCli, UNetFromAConfigTrains) {
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string o = test::temp_dir() + "/unet-scratch";
  std::string out;
  ASSERT_EQ(
      test::run_command(test::cli_path() + " train unet -m " + model + " --config " + model +
                            "/unet --data " + make_data() + " -o " + o +
                            " --resolution 64 --steps 2 --cache-latents --cache-text-embeddings"
                            " --prediction-type v_prediction --save-dtype f16 -t 1 -q 2>&1",
                        &out),
      0)
      << out;
  const auto f = io::open_model(o + "/checkpoint-2");
  EXPECT_EQ(f.scheduler_config.at("prediction_type"), "v_prediction");
  EXPECT_EQ(f.unet.at("conv_in.weight").dtype(), DType::F16);  // --save-dtype
  // A fresh UNet, not the model's.
  const auto base = io::open_model(model);
  EXPECT_GT(
      test::rel_error(f.unet.at("conv_in.weight"), base.unet.at("conv_in.weight").to(DType::F32)),
      0.5);
}

TEST(TrainCli, LoraTrainsExtendsByResumeAndLoadsInGenerate) {
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string dir = test::temp_dir();
  auto args = [&](const std::string& out, int steps) {
    return test::cli_path() + " train lora -m " + model + " --data " + make_data() + " -o " + out +
           " --resolution 64 --rank 4 --alpha 2 --lr 1e-2 --ema --steps " + std::to_string(steps) +
           " -t 1 -q";
  };
  std::string out;
  ASSERT_EQ(test::run_command(args(dir + "/lora-a", 4) + " 2>&1", &out), 0) << out;
  // Two steps, then two more: the same curve as four at once (a constant learning rate).
  ASSERT_EQ(test::run_command(args(dir + "/lora-b", 2) + " 2>&1", &out), 0) << out;
  ASSERT_EQ(test::run_command(args(dir + "/lora-b", 4) + " --resume 2>&1", &out), 0) << out;
  EXPECT_EQ(log_rows(dir + "/lora-a/log.csv"), log_rows(dir + "/lora-b/log.csv"));
  const std::string file = dir + "/lora-a/checkpoint-4/lora.safetensors";
  const auto a = io::load_safetensors(file),
             b = io::load_safetensors(dir + "/lora-b/checkpoint-4/lora.safetensors");
  expect_same_tensors(a, b, "lora");
  // Only the adapters trained: lora_up started at zero and moved.
  float up = 0;
  for (auto& [name, t] : a)
    if (name.find("lora_up") != std::string::npos) {
      const Tensor f = t.to(DType::F32).contiguous();
      for (int64_t i = 0; i < f.numel(); ++i) up = std::max(up, std::abs(f.data<float>()[i]));
    }
  EXPECT_GT(up, 0.f);
  const std::string gen = test::cli_path() + " generate -m " + model +
                          " -p \"a picture\" -W 64 -H 64 --steps 2 -s 1 -t 1 -q -o " + dir;
  ASSERT_EQ(test::run_command(gen + "/plain.png 2>&1", &out), 0) << out;
  ASSERT_EQ(test::run_command(gen + "/lora.png --lora " + file + ":1 2>&1", &out), 0) << out;
  EXPECT_NE(io::load_image(dir + "/plain.png").pixels, io::load_image(dir + "/lora.png").pixels);
}

TEST(TrainCli, VaeLossFalls) {
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string o = test::temp_dir() + "/vae";
  std::string out;
  ASSERT_EQ(test::run_command(
                test::cli_path() + " train vae -m " + model + " --data " + make_data() + " -o " +
                    o + " --resolution 16 --batch-size 2 --steps 20 --lr 1e-3 -t 1 -q 2>&1",
                &out),
            0)
      << out;
  const auto l = losses(o + "/log.csv");
  ASSERT_EQ(l.size(), 20u);
  EXPECT_LT(mean(l, 15, 20), 0.6 * mean(l, 0, 3)) << testing::PrintToString(l);
  // The trained VAE: a diffusers folder, and the same weights under the original names.
  const auto folder =
      io::load_safetensors(o + "/checkpoint-20/vae/diffusion_pytorch_model.safetensors");
  const auto single = io::load_safetensors(o + "/checkpoint-20/vae.safetensors");
  EXPECT_EQ(folder.size(), single.size());
  EXPECT_EQ(
      test::rel_error(folder.at("encoder.conv_in.weight"), single.at("encoder.conv_in.weight")), 0);
}

TEST(TrainCli, VaeScalingFactorIsMeasuredOrGiven) {
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string o = test::temp_dir() + "/vae-scale";
  const std::string args = test::cli_path() + " train vae -m " + model + " --data " + make_data() +
                           " --resolution 16 --steps 2 --lr 1e-3 --ema --ema-decay 0.5 -t 1 -q";
  std::string out;
  ASSERT_EQ(test::run_command(args + " --scaling-images 3 -o " + o + " 2>&1", &out), 0) << out;
  // Recomputed: 1 / the unbiased std of the posterior means of the first 3 images, through the
  // saved (EMA) weights.
  const std::string dir = o + "/checkpoint-2/vae";
  const auto config = nlohmann::json::parse(io::read_text_file(dir + "/config.json"));
  models::AutoencoderKL vae(models::VaeConfig::from_json(config));
  vae.load_state_dict(io::load_safetensors(dir + "/diffusion_pytorch_model.safetensors"), "vae");
  const auto data = train::ImageCaptionDataset::open(make_data());
  std::vector<double> v;
  for (int64_t i = 0; i < 3; ++i) {
    const Tensor m = vae.encode(data.image(i, 16).unsqueeze(0)).mean.contiguous();
    v.insert(v.end(), m.data<float>(), m.data<float>() + m.numel());
  }
  double mu = 0, var = 0;
  for (double x : v) mu += x / double(v.size());
  for (double x : v) var += (x - mu) * (x - mu) / double(v.size() - 1);
  const double expected = 1 / std::sqrt(var);
  EXPECT_NEAR(config.at("scaling_factor").get<double>(), expected, 1e-5 * expected);
  EXPECT_GT(std::abs(expected - 0.18215), 1e-3);  // not the published value left in place
  // Given: written as is.
  ASSERT_EQ(test::run_command(args + " --scaling-factor 0.25 -o " + o + "-given 2>&1", &out), 0)
      << out;
  const auto given =
      nlohmann::json::parse(io::read_text_file(o + "-given/checkpoint-2/vae/config.json"));
  EXPECT_FLOAT_EQ(given.at("scaling_factor").get<float>(), 0.25f);
}

TEST(TrainCli, ClipLossFalls) {
  const std::string o = test::temp_dir() + "/clip", cfg = test::tiny_clip_config(test::temp_dir());
  std::string out;
  const int rc = test::run_command(test::cli_path() + " train clip --config " + cfg + " --data " +
                                       make_data() + " -o " + o +
                                       " --batch-size 4 --steps 20 --lr 1e-3 -t 1 -q 2>&1",
                                   &out);
  if (rc != 0 && out.find("fetch_data") != std::string::npos)
    GTEST_SKIP() << "no CLIP vocabulary: " << out;
  ASSERT_EQ(rc, 0) << out;
  const auto l = losses(o + "/log.csv");
  ASSERT_EQ(l.size(), 20u);
  EXPECT_LT(mean(l, 15, 20), 0.6 * mean(l, 0, 3)) << testing::PrintToString(l);
  const auto w = io::load_safetensors(o + "/checkpoint-20/model.safetensors");
  ASSERT_TRUE(w.count("logit_scale"));
  EXPECT_NE(w.at("logit_scale").to(DType::F32).item(), 2.6592f);  // the temperature is trained
  EXPECT_TRUE(fs::exists(o + "/checkpoint-20/config.json"));
}

TEST(TrainCli, ClipCheckpointPartsGiveTheFullModelsEmbeddings) {
  const std::string o = test::temp_dir() + "/clip-parts";
  std::string out;
  const int rc =
      test::run_command(test::cli_path() + " train clip --config " +
                            test::tiny_clip_config(test::temp_dir()) + " --data " + make_data() +
                            " -o " + o + " --batch-size 4 --steps 2 --lr 1e-2 -t 1 -q 2>&1",
                        &out);
  if (rc != 0 && out.find("fetch_data") != std::string::npos)
    GTEST_SKIP() << "no CLIP vocabulary: " << out;
  ASSERT_EQ(rc, 0) << out;
  const std::string ck = o + "/checkpoint-2";
  // text_encoder/: the text tower only; vision/: everything else.
  const auto full_w = io::load_safetensors(ck + "/model.safetensors");
  const auto text_w = io::load_safetensors(ck + "/text_encoder/model.safetensors");
  const auto vision_w = io::load_safetensors(ck + "/vision/model.safetensors");
  EXPECT_EQ(text_w.size() + vision_w.size(), full_w.size());
  for (auto& [name, t] : text_w) EXPECT_TRUE(name.starts_with("text_model.")) << name;
  for (auto& [name, t] : vision_w) EXPECT_FALSE(name.starts_with("text_model.")) << name;
  EXPECT_TRUE(vision_w.count("logit_scale") && vision_w.count("text_projection.weight"));
  const auto text_cfg = nlohmann::json::parse(io::read_text_file(ck + "/text_encoder/config.json"));
  EXPECT_EQ(text_cfg.at("architectures")[0], "CLIPTextModel");

  const auto full = train::load_clip_folder(ck);
  const auto parts =
      train::load_clip_folder(ck + "/vision", ck + "/text_encoder/model.safetensors");
  models::ClipTextModel text(models::ClipTextConfig::from_json(text_cfg));
  text.load_state_dict(text_w, "text_encoder");
  std::vector<int64_t> id_list(32, 49407);  // two captions of 16 tokens, padded with the end
  for (int64_t k : {0, 16}) id_list[size_t(k)] = 49406;
  for (int64_t k : {1, 2, 17}) id_list[size_t(k)] = 320 + k;
  const Tensor ids = Tensor::from_i64(id_list, {2, 16});
  std::vector<Tensor> px;
  for (int k = 0; k < 2; ++k)
    px.push_back(
        train::clip_pixels(io::load_image(make_data() + "/img" + std::to_string(k) + ".png"), 32));
  const Tensor pixels = ops::cat(px, 0);
  const models::ClipModelOutput a = full->forward(ids, pixels), b = parts->forward(ids, pixels);
  EXPECT_EQ(test::rel_error(a.text_embeds, b.text_embeds), 0);
  EXPECT_EQ(test::rel_error(a.image_embeds, b.image_embeds), 0);
  EXPECT_EQ(test::rel_error(a.logits_per_image, b.logits_per_image), 0);
  EXPECT_EQ(test::rel_error(text.forward(ids).last_hidden_state,
                            full->text_model.forward(ids).last_hidden_state),
            0);
  EXPECT_EQ(test::rel_error(text.encode(ids, 1), full->text_model.forward(ids).last_hidden_state),
            0);
  // --save-dtype f16: every model file in f16, the parts still load.
  ASSERT_EQ(test::run_command(test::cli_path() + " train clip --config " +
                                  test::tiny_clip_config(test::temp_dir()) + " --data " +
                                  make_data() + " -o " + o +
                                  "-f16 --batch-size 4 --steps 2 --lr 1e-2 --save-dtype f16 -t 1 "
                                  "-q 2>&1",
                              &out),
            0)
      << out;
  const std::string ck16 = o + "-f16/checkpoint-2";
  for (const char* f :
       {"/model.safetensors", "/text_encoder/model.safetensors", "/vision/model.safetensors"})
    EXPECT_EQ(
        io::load_safetensors(ck16 + f)
            .at(f[1] == 't' ? "text_model.final_layer_norm.weight" : "visual_projection.weight")
            .dtype(),
        DType::F16)
        << f;
  const auto half =
      train::load_clip_folder(ck16 + "/vision", ck16 + "/text_encoder/model.safetensors");
  EXPECT_LT(test::rel_error(half->forward(ids, pixels).logits_per_image, a.logits_per_image), 1e-2);
}

TEST(TrainCli, UNetFromScratchOnTrainedPartsIsAPipeline) {
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string dir = test::temp_dir() + "/parts", data = make_data();
  std::string out;
  // The parts: a VAE fine-tuned from the tiny model's, a CLIP trained from scratch (its text
  // tower has the width of the tiny UNet's cross-attention).
  ASSERT_EQ(test::run_command(test::cli_path() + " train vae -m " + model + " --data " + data +
                                  " -o " + dir + "/vae --resolution 16 --steps 1 -t 1 -q 2>&1",
                              &out),
            0)
      << out;
  const int rc = test::run_command(
      test::cli_path() + " train clip --config " + test::tiny_clip_config(test::temp_dir()) +
          " --data " + data + " -o " + dir + "/clip --batch-size 4 --steps 1 -t 1 -q 2>&1",
      &out);
  if (rc != 0 && out.find("fetch_data") != std::string::npos)
    GTEST_SKIP() << "no CLIP vocabulary: " << out;
  ASSERT_EQ(rc, 0) << out;
  const std::string vae = dir + "/vae/checkpoint-1/vae",
                    text = dir + "/clip/checkpoint-1/text_encoder";
  const std::string common = " --config " + model + "/unet --data " + data +
                             " --resolution 64 --steps 2 --cache-text-embeddings -t 1 -q";
  ASSERT_EQ(test::run_command(test::cli_path() + " train unet --vae " + vae + " --text-encoder " +
                                  text + common + " -o " + dir + "/unet 2>&1",
                              &out),
            0)
      << out;
  const std::string ck = dir + "/unet/checkpoint-2";
  const auto f = io::open_model(ck);
  EXPECT_EQ(f.layout, io::ModelLayout::DiffusersFolder);
  for (const char* p : {"/model_index.json", "/scheduler/scheduler_config.json",
                        "/tokenizer/special_tokens_map.json", "/model.safetensors"})
    EXPECT_TRUE(fs::exists(ck + p)) << p;
  io::ModelFiles parts;
  io::read_component_folder(vae, "vae", parts);
  io::read_component_folder(text, "text_encoder", parts);
  expect_same_tensors(f.vae, parts.vae, "vae");
  expect_same_tensors(f.text_encoder, parts.text_encoder, "text encoder");
  EXPECT_EQ(f.vae_config.at("scaling_factor"), parts.vae_config.at("scaling_factor"));
  EXPECT_EQ(f.text_encoder_config.at("max_position_embeddings"), 16);
  EXPECT_EQ(f.scheduler_config.at("beta_schedule"), "scaled_linear");  // SD's published one
  ASSERT_EQ(test::run_command(test::cli_path() + " generate -m " + ck +
                                  " -p \"a picture\" -W 64 -H 64 --steps 2 -s 1 -t 1 -q -o " + dir +
                                  "/g.png 2>&1",
                              &out),
            0)
      << out;
  EXPECT_EQ(io::load_image(dir + "/g.png").width, 64);

  // -m BASE without unet/ gives the same parts: the same run.
  fs::create_directories(dir + "/base");
  fs::create_directory_symlink(fs::absolute(vae), dir + "/base/vae");
  fs::create_directory_symlink(fs::absolute(text), dir + "/base/text_encoder");
  ASSERT_EQ(test::run_command(test::cli_path() + " train unet -m " + dir + "/base" + common +
                                  " -o " + dir + "/unet-base 2>&1",
                              &out),
            0)
      << out;
  EXPECT_EQ(log_rows(dir + "/unet/log.csv"), log_rows(dir + "/unet-base/log.csv"));
  // Without a UNet config, or with only one part: clear errors.
  EXPECT_NE(test::run_command(test::cli_path() + " train unet -m " + dir + "/base --data " + data +
                                  " -o " + dir + "/x --steps 1 2>&1",
                              &out),
            0);
  EXPECT_NE(out.find("--config"), std::string::npos) << out;
  EXPECT_NE(test::run_command(test::cli_path() + " train unet --vae " + vae + " --config " + model +
                                  "/unet --data " + data + " -o " + dir + "/x --steps 1 2>&1",
                              &out),
            0);
  EXPECT_NE(out.find("--text-encoder"), std::string::npos) << out;
}

TEST(TrainCli, CaptionDropout) {
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string dir = test::temp_dir() + "/dropout", data = make_data();
  // The same images with empty captions.
  fs::create_directories(dir + "/empty");
  for (int k = 0; k < 4; ++k) {
    const std::string name = "/img" + std::to_string(k);
    fs::copy_file(data + name + ".png", dir + "/empty" + name + ".png");
    std::ofstream(dir + "/empty" + name + ".txt");
  }
  auto run = [&](const std::string& d, const std::string& out_dir, const std::string& extra) {
    std::string out;
    const int rc = test::run_command(test::cli_path() + " train unet -m " + model + " --data " + d +
                                         " -o " + dir + "/" + out_dir +
                                         " --resolution 64 --batch-size 2 --lr 1e-3 --seed 5 -t "
                                         "1 -q " +
                                         extra + " 2>&1",
                                     &out);
    EXPECT_EQ(rc, 0) << out;
    return log_rows(dir + "/" + out_dir + "/log.csv");
  };
  const auto plain = run(data, "plain", "--steps 3");
  // p = 1: every caption is the empty one (the cached empty encoding is the same).
  const auto all = run(data, "all", "--steps 3 --caption-dropout 1 --cache-text-embeddings");
  EXPECT_EQ(all, run(dir + "/empty", "empty", "--steps 3"));
  EXPECT_NE(all, plain);
  // p = 0: unchanged.
  EXPECT_EQ(run(data, "zero", "--steps 3 --caption-dropout 0"), plain);
  // Some dropped: a resumed run continues the same curve.
  const auto half = run(data, "half", "--steps 4 --caption-dropout 0.5 --cache-text-embeddings");
  const std::vector<std::string> half3(half.begin(), half.begin() + 3);
  EXPECT_NE(half3, plain);  // some captions dropped, not all
  EXPECT_NE(half3, all);
  run(data, "half-resumed", "--steps 2 --caption-dropout 0.5 --cache-text-embeddings");
  EXPECT_EQ(run(data, "half-resumed",
                "--steps 4 --caption-dropout 0.5 --cache-text-embeddings "
                "--resume"),
            half);
  std::string out;
  EXPECT_NE(test::run_command(test::cli_path() + " train unet -m " + model + " --data " + data +
                                  " -o " + dir + "/x --steps 1 --caption-dropout 1.5 2>&1",
                              &out),
            0);
  EXPECT_NE(out.find("caption-dropout"), std::string::npos) << out;
}

TEST(TrainCli, BadDataIsAClearError) {
  const std::string d = test::temp_dir() + "/bad-data";
  fs::create_directories(d);
  io::save_png(d + "/alone.png", io::Image{8, 8, 3, std::vector<uint8_t>(8 * 8 * 3)});
  std::string out;
  EXPECT_EQ(test::run_command(test::cli_path() + " train vae --config x.json --data " + d + " -o " +
                                  d + "/o --steps 1 2>&1",
                              &out),
            1);
  EXPECT_NE(out.find("alone.png"), std::string::npos) << out;
  EXPECT_NE(
      test::run_command(test::cli_path() + " train vae --data " + d + " -o o --steps 1 2>&1", &out),
      0);
  EXPECT_NE(out.find("--config"), std::string::npos) << out;
}
