// CLIP R-precision's library (train/r_precision.h): scoring of hand-built score matrices, the
// CLIP folder layout (text tower inside or beside it), and the CLIP's view of an image.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "io/image.h"
#include "test_util.h"
#include "tiny_clip.h"
#include "train/dataset.h"
#include "train/r_precision.h"

using namespace diffuse;

namespace {

Tensor matrix(const std::vector<std::vector<float>>& rows) {
  std::vector<float> v;
  for (auto& r : rows) v.insert(v.end(), r.begin(), r.end());
  return Tensor::from_vector(v, {int64_t(rows.size()), int64_t(rows[0].size())});
}

io::Image pattern_image(int w, int h, int channels, int seed) {
  io::Image img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.pixels.resize(size_t(w) * h * channels);
  for (size_t i = 0; i < img.pixels.size(); ++i)
    img.pixels[i] = uint8_t((i * 37 + seed * 101) % 251);
  return img;
}

}  // namespace

TEST(RPrecision, CountsImagesWhoseOwnCaptionScoresHighest) {
  // Image 0: own 0.9 beats 0.1, 0.2. Image 1: caption 2 scores higher. Image 2: own is highest.
  const auto r =
      train::r_precision(matrix({{0.9f, 0.1f, 0.2f}, {0.3f, 0.4f, 0.5f}, {-1.f, -2.f, 0.f}}));
  EXPECT_EQ(r.total, 3);
  EXPECT_EQ(r.hits, 2);
  EXPECT_DOUBLE_EQ(r.value(), 2.0 / 3.0);
  EXPECT_EQ(r.rivals, (std::vector<int64_t>{0, 1, 0}));
}

TEST(RPrecision, TiesAreMisses) {
  // Image 0 ties with caption 1; image 1 ties with both others; image 2 is a clear hit.
  const auto r =
      train::r_precision(matrix({{0.5f, 0.5f, 0.1f}, {0.2f, 0.2f, 0.2f}, {0.f, 0.f, 1.f}}));
  EXPECT_EQ(r.hits, 1);
  EXPECT_EQ(r.rivals, (std::vector<int64_t>{1, 2, 0}));
  EXPECT_DOUBLE_EQ(r.value(), 1.0 / 3.0);
}

TEST(RPrecision, PermutedCaptionsScoreZeroAndIdentityScoresOne) {
  const int n = 7;
  std::vector<std::vector<float>> own(n, std::vector<float>(n, 0.f)), shifted = own;
  for (int i = 0; i < n; ++i) {
    own[size_t(i)][size_t(i)] = 1.f;
    shifted[size_t(i)][size_t((i + 1) % n)] = 1.f;
  }
  EXPECT_DOUBLE_EQ(train::r_precision(matrix(own)).value(), 1.0);
  EXPECT_DOUBLE_EQ(train::r_precision(matrix(shifted)).value(), 0.0);
}

TEST(RPrecision, BadScoresAreErrors) {
  EXPECT_THROW(train::r_precision(matrix({{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}})), Error);
  EXPECT_THROW(train::r_precision(Tensor::zeros({4})), Error);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(train::r_precision(matrix({{nan, 0.f}, {0.f, 1.f}})), Error);
  // A NaN rival counts against the image.
  EXPECT_EQ(train::r_precision(matrix({{1.f, nan}, {0.f, 1.f}})).hits, 1);
}

TEST(RPrecision, ClipPixelsAreTheTrainingView) {
  // An RGBA image, resized and cropped as training does: [1, 3, S, S], the pixels that
  // load_training_image makes of the same image on disk, normalized per channel.
  const io::Image img = pattern_image(48, 40, 4, 3);
  const std::string path = test::temp_dir() + "/rgba.png";
  io::save_png(path, img);
  const Tensor got = train::clip_pixels(img, 24);
  ASSERT_EQ(got.shape(), (Shape{1, 3, 24, 24}));
  Tensor want = train::load_training_image(path, 24);  // [3, S, S] in [-1, 1]
  float* w = want.data<float>();
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t i = 0; i < 24 * 24; ++i)
      w[k * 24 * 24 + i] =
          ((w[k * 24 * 24 + i] + 1) / 2 - train::kClipImageMean[k]) / train::kClipImageStd[k];
  EXPECT_LE(test::rel_error(got.reshape({3, 24, 24}), want), 1e-6);
}

TEST(RPrecision, ClipFolderWithItsTextTowerBesideIt) {
  const std::string whole = test::temp_dir() + "/clip_whole",
                    apart = test::temp_dir() + "/clip_apart";
  if (!test::write_tiny_clip_folder(whole) || !test::write_tiny_clip_folder(apart, true))
    GTEST_SKIP() << "reference tiny CLIP absent";
  const auto a = train::load_clip_folder(whole);
  const auto b = train::load_clip_folder(apart, apart + "/text_model.safetensors");
  // Without the text tower and nothing to take it from: strict loading names what is missing.
  try {
    train::load_clip_folder(apart);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("text_model."), std::string::npos) << e.what();
  }
  EXPECT_THROW(train::load_clip_folder(test::temp_dir() + "/no_such_clip"), Error);

  // Scores of both loads agree, and are the model's logits per image.
  const int64_t s = a->config().vision.image_size;
  std::vector<Tensor> px;
  for (int i = 0; i < 3; ++i)
    px.push_back(train::clip_pixels(pattern_image(int(s), int(s), 3, i), s));
  Tensor pixels = Tensor::empty({3, 3, s, s});
  for (int i = 0; i < 3; ++i)
    std::copy_n(px[size_t(i)].data<float>(), 3 * s * s, pixels.data<float>() + i * 3 * s * s);
  const int64_t eos = a->config().text.eos_token_id, bos = a->config().text.bos_token_id;
  std::vector<int64_t> ids;
  for (int64_t t : {320, 1929, 2368, 4558}) {
    std::vector<int64_t> row(8, eos);
    row[0] = bos;
    row[1] = t;
    row[2] = t + 1;
    ids.insert(ids.end(), row.begin(), row.end());
  }
  const Tensor id_tensor = Tensor::from_i64(ids, {4, 8});
  const Tensor sa = train::clip_scores(*a, id_tensor, pixels);
  ASSERT_EQ(sa.shape(), (Shape{3, 4}));
  EXPECT_LE(test::rel_error(train::clip_scores(*b, id_tensor, pixels), sa), 1e-6);
  EXPECT_LE(test::rel_error(sa, a->forward(id_tensor, pixels).logits_per_image.contiguous()), 1e-6);
  // Wrongly sized pixels are an error naming the expected shape.
  EXPECT_THROW(train::clip_scores(*a, id_tensor, Tensor::zeros({3, 3, s + 8, s + 8})), Error);
}
