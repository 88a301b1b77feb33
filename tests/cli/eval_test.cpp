// `diffuse eval` end to end: a reference model generates from a tiny held-out folder, the
// reference's tiny CLIP scores; the JSON line must equal a recomputation with the library from
// the images it saved and the real ones.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "model_forms.h"
#include "test_util.h"
#include "tiny_clip.h"
#include "train/dataset.h"
#include "train/r_precision.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t.substr(t.rfind('\n') == std::string::npos ? 0 : t.rfind('\n') + 1);
}

// A held-out folder of `n` 64x64 images with distinct captions in metadata.jsonl.
std::string make_heldout(const std::string& dir, int n) {
  fs::create_directories(dir);
  std::ofstream meta(dir + "/metadata.jsonl");
  const char* colours[] = {"red", "green", "blue", "yellow", "purple", "orange", "black", "white"};
  for (int i = 0; i < n; ++i) {
    io::Image img;
    img.width = img.height = 64;
    img.channels = 3;
    img.pixels.resize(64 * 64 * 3);
    for (size_t p = 0; p < img.pixels.size(); ++p)
      img.pixels[p] = uint8_t((p * (i + 3) + 17 * i) % 256);
    const std::string name = "img" + std::to_string(i) + ".png";
    io::save_png(dir + "/" + name, img);
    meta << nlohmann::json{{"file_name", name},
                           {"text",
                            std::string("a ") + colours[i % 8] + " emoji " + std::to_string(i)}}
                .dump()
         << "\n";
  }
  return dir;
}

struct EvalFolders {
  const test::ModelForm* form = nullptr;
  std::string clip, heldout;
};

EvalFolders make_folders(const std::string& name, int images) {
  EvalFolders s;
  s.form = test::first_diffusers_form();
  const std::string dir = test::temp_dir() + "/" + name;
  s.clip = dir + "/clip";
  if (!s.form || !test::write_tiny_clip_folder(s.clip)) return {};
  s.heldout = make_heldout(dir + "/heldout", images);
  return s;
}

}  // namespace

TEST(EvalCli, JsonLineEqualsARecomputationFromTheLibrary) {
  const EvalFolders s = make_folders("eval_json", 7);
  if (!s.form) GTEST_SKIP() << "reference model or tiny CLIP absent";
  const std::string gen = test::temp_dir() + "/eval_json/generated";
  const int count = 5;
  std::string out;
  ASSERT_EQ(
      test::run_diffuse("eval -m " + test::shell_quote(s.form->path) + " --clip " +
                            test::shell_quote(s.clip) + " --data " + test::shell_quote(s.heldout) +
                            " --count " + std::to_string(count) +
                            " --steps 2 --seed 3 --json -q --save-images " + test::shell_quote(gen),
                        &out),
      0)
      << out;
  const std::string line = last_line(out);
  ASSERT_EQ(line.rfind("{\"r_precision_generated\": ", 0), 0u) << line;
  const auto j = nlohmann::json::parse(line);
  ASSERT_EQ(j.size(), 2u) << line;
  const double got_gen = j.at("r_precision_generated").get<double>();
  const double got_real = j.at("r_precision_real").get<double>();
  for (double v : {got_gen, got_real}) {
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
  EXPECT_NE(out.find("generated"), std::string::npos) << out;

  // The saved generated images are a captioned folder of `count` distinct held-out captions.
  const auto generated = train::ImageCaptionDataset::open(gen);
  ASSERT_EQ(generated.size(), count);
  const auto heldout = train::ImageCaptionDataset::open(s.heldout);
  std::map<std::string, std::string> real_by_caption;
  for (int64_t i = 0; i < heldout.size(); ++i)
    real_by_caption[heldout[i].caption] = heldout[i].image_path;

  // Recompute: the model's tokenizer, the CLIP folder, the library's pixels and scores.
  const auto clip = train::load_clip_folder(s.clip);
  auto model = test::open_form(*s.form);
  const int64_t res = clip->config().vision.image_size,
                len = clip->config().text.max_position_embeddings;
  std::vector<int64_t> ids;
  Tensor gen_px = Tensor::empty({count, 3, res, res}), real_px = gen_px.clone();
  for (int64_t i = 0; i < count; ++i) {
    const std::string& caption = generated[i].caption;
    ASSERT_TRUE(real_by_caption.count(caption)) << caption;
    auto v = model->tokenizer().encode_padded(caption, clip->config().text.eos_token_id, int(len));
    ids.insert(ids.end(), v.begin(), v.end());
    const Tensor g = train::clip_pixels(io::load_image(generated[i].image_path), res);
    const Tensor r = train::clip_pixels(io::load_image(real_by_caption[caption]), res);
    std::copy_n(g.data<float>(), 3 * res * res, gen_px.data<float>() + i * 3 * res * res);
    std::copy_n(r.data<float>(), 3 * res * res, real_px.data<float>() + i * 3 * res * res);
    EXPECT_EQ(io::load_image(generated[i].image_path).width, 64);  // the held-out images' size
  }
  const Tensor id_tensor = Tensor::from_i64(ids, {count, len});
  EXPECT_DOUBLE_EQ(got_gen,
                   train::r_precision(train::clip_scores(*clip, id_tensor, gen_px)).value());
  EXPECT_DOUBLE_EQ(got_real,
                   train::r_precision(train::clip_scores(*clip, id_tensor, real_px)).value());
}

TEST(EvalCli, ClearErrors) {
  const EvalFolders s = make_folders("eval_errors", 3);
  if (!s.form) GTEST_SKIP() << "reference model or tiny CLIP absent";
  const std::string base = "eval -m " + test::shell_quote(s.form->path) + " --data " +
                           test::shell_quote(s.heldout) + " --steps 1 -q";
  std::string out;
  // No CLIP beside the model and none given.
  EXPECT_NE(test::run_diffuse(base + " --count 3", &out), 0);
  EXPECT_NE(out.find("no CLIP found"), std::string::npos) << out;
  // More captions asked for than the folder has.
  EXPECT_NE(test::run_diffuse(base + " --clip " + test::shell_quote(s.clip) + " --count 4", &out),
            0);
  EXPECT_NE(out.find("fewer than --count"), std::string::npos) << out;
  // A folder that does not exist.
  EXPECT_NE(test::run_diffuse("eval -m " + test::shell_quote(s.form->path) + " --clip " +
                                  test::shell_quote(s.clip) + " --data " +
                                  test::shell_quote(s.heldout + "/nope") + " --count 2 -q",
                              &out),
            0);
  EXPECT_NE(out.find("nope"), std::string::npos) << out;
  // Two held-out images with one caption.
  {
    std::ofstream meta(s.heldout + "/metadata.jsonl", std::ios::app);
    io::save_png(s.heldout + "/zz.png", io::load_image(s.heldout + "/img0.png"));
    meta << nlohmann::json{{"file_name", "zz.png"}, {"text", "a red emoji 0"}}.dump() << "\n";
  }
  EXPECT_NE(test::run_diffuse(base + " --clip " + test::shell_quote(s.clip) + " --count 4", &out),
            0);
  EXPECT_NE(out.find("share the caption"), std::string::npos) << out;
}
