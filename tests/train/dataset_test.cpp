// Training datasets: captions from .txt files and metadata.jsonl, resize and center-crop
// geometry, alpha over white, the errors users meet, and the deterministic sample order.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "io/image.h"
#include "test_util.h"
#include "train/dataset.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

io::Image solid(int w, int h, int channels, std::array<uint8_t, 4> c) {
  io::Image img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  for (int i = 0; i < w * h; ++i)
    for (int k = 0; k < channels; ++k) img.pixels.push_back(c[size_t(k)]);
  return img;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

std::string fresh_dir(const std::string& name) {
  const fs::path d = fs::path(test::temp_dir()) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Dataset, TxtCaptionsBesideImages) {
  const std::string d = fresh_dir("txt");
  io::save_png(d + "/b.png", solid(8, 8, 3, {10, 20, 30, 0}));
  io::save_png(d + "/a.png", solid(8, 8, 4, {0, 0, 0, 0}));
  write(d + "/a.txt", "  a transparent square\n");
  write(d + "/b.txt", "a dark square");
  write(d + "/notes.md", "ignored");
  const auto ds = train::ImageCaptionDataset::open(d);
  ASSERT_EQ(ds.size(), 2);
  EXPECT_EQ(fs::path(ds[0].image_path).filename(), "a.png");  // sorted by name
  EXPECT_EQ(ds[0].caption, "a transparent square");           // trimmed
  EXPECT_EQ(ds[1].caption, "a dark square");
  // Fully transparent composites onto white: +1 everywhere.
  const Tensor a = ds.image(0, 4);
  ASSERT_EQ(a.shape(), (Shape{3, 4, 4}));
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_FLOAT_EQ(a.data<float>()[i], 1.f);
  const Tensor b = ds.image(1, 4);
  EXPECT_NEAR(b.data<float>()[0], 10 / 127.5f - 1, 1e-6);       // red plane
  EXPECT_NEAR(b.data<float>()[2 * 16], 30 / 127.5f - 1, 1e-6);  // blue plane
}

TEST(Dataset, MetadataJsonlWithTextOrCaption) {
  const std::string d = fresh_dir("jsonl");
  fs::create_directories(d + "/sub");
  io::save_png(d + "/x.png", solid(4, 4, 3, {1, 2, 3, 0}));
  io::save_png(d + "/sub/y.png", solid(4, 4, 3, {1, 2, 3, 0}));
  write(d + "/metadata.jsonl",
        "{\"file_name\": \"x.png\", \"text\": \"first\"}\n\n"
        "{\"file_name\": \"sub/y.png\", \"caption\": \"second\"}\n");
  const auto ds = train::ImageCaptionDataset::open(d);
  ASSERT_EQ(ds.size(), 2);
  std::set<std::string> caps{ds[0].caption, ds[1].caption};
  EXPECT_EQ(caps, (std::set<std::string>{"first", "second"}));
}

TEST(Dataset, ErrorsNameTheProblem) {
  const std::string empty = fresh_dir("empty");
  EXPECT_NE(error_of([&] { train::ImageCaptionDataset::open(empty); }).find("no images"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { train::ImageCaptionDataset::open(empty + "/missing"); }).find("not a folder"),
      std::string::npos);

  const std::string nocap = fresh_dir("nocap");
  io::save_png(nocap + "/lonely.png", solid(4, 4, 3, {}));
  EXPECT_NE(error_of([&] { train::ImageCaptionDataset::open(nocap); }).find("lonely.png"),
            std::string::npos);

  const std::string bad = fresh_dir("badjson");
  io::save_png(bad + "/x.png", solid(4, 4, 3, {}));
  write(bad + "/metadata.jsonl", "{\"file_name\": \"x.png\", \"text\": \"ok\"}\n{oops\n");
  EXPECT_NE(error_of([&] { train::ImageCaptionDataset::open(bad); }).find("line 2"),
            std::string::npos);
  write(bad + "/metadata.jsonl", "{\"file_name\": \"x.png\"}\n");
  EXPECT_NE(error_of([&] { train::ImageCaptionDataset::open(bad); }).find("line 1"),
            std::string::npos);
  write(bad + "/metadata.jsonl", "{\"file_name\": \"gone.png\", \"text\": \"t\"}\n");
  EXPECT_NE(error_of([&] { train::ImageCaptionDataset::open(bad); }).find("gone.png"),
            std::string::npos);

  const std::string broken = fresh_dir("broken");
  write(broken + "/junk.png", "not a png at all");
  write(broken + "/junk.txt", "caption");
  const auto ds = train::ImageCaptionDataset::open(broken);
  EXPECT_NE(error_of([&] { ds.image(0, 8); }).find("junk.png"), std::string::npos);
}

TEST(Dataset, ResizeShorterSideThenCenterCrop) {
  // 40x20: red | green (x 10..29) | blue. Shorter side 20 -> 10: the crop is the green middle.
  io::Image img = solid(40, 20, 3, {});
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 40; ++x) {
      uint8_t* p = &img.pixels[size_t((y * 40 + x) * 3)];
      p[x < 10 ? 0 : x < 30 ? 1 : 2] = 255;
    }
  const io::Image out = train::resize_and_center_crop(img, 10);
  ASSERT_EQ(out.width, 10);
  ASSERT_EQ(out.height, 10);
  ASSERT_EQ(out.channels, 3);
  for (int y = 0; y < 10; ++y)
    for (int x = 1; x < 9; ++x) {  // the edge columns may blend a little of the neighbours
      const uint8_t* p = &out.pixels[size_t((y * 10 + x) * 3)];
      EXPECT_EQ(p[0], 0);
      EXPECT_EQ(p[1], 255);
      EXPECT_EQ(p[2], 0);
    }
  // Tall 6x12: top third black, middle white, bottom black -> 3x3 of the middle rows 3..8.
  io::Image tall = solid(6, 12, 1, {0, 0, 0, 0});
  for (int y = 4; y < 8; ++y)
    for (int x = 0; x < 6; ++x) tall.pixels[size_t(y * 6 + x)] = 255;
  const io::Image t = train::resize_and_center_crop(tall, 3);
  ASSERT_EQ(t.width, 3);
  EXPECT_EQ(t.pixels[size_t((1 * 3 + 1) * 3)], 255);  // center row white (gray expanded)
  EXPECT_LT(t.pixels[size_t((0 * 3 + 1) * 3)], 255);  // edges mix in black
  // Upscaling keeps a constant image constant.
  const io::Image up = train::resize_and_center_crop(solid(3, 5, 3, {7, 8, 9, 0}), 16);
  for (size_t i = 0; i < up.pixels.size(); i += 3) ASSERT_EQ(up.pixels[i + 1], 8);
}

TEST(Dataset, EpochOrderAndSampleSeedsAreFunctionsOfTheirInputs) {
  const auto p = train::epoch_permutation(50, 7, 3);
  std::set<int64_t> s(p.begin(), p.end());
  EXPECT_EQ(s.size(), 50u);
  EXPECT_EQ(*s.begin(), 0);
  EXPECT_EQ(*s.rbegin(), 49);
  EXPECT_EQ(p, train::epoch_permutation(50, 7, 3));
  EXPECT_NE(p, train::epoch_permutation(50, 7, 4));
  EXPECT_NE(p, train::epoch_permutation(50, 8, 3));
  // The stream walks epoch 0's order, then epoch 1's.
  train::SampleStream st(5, 11);
  const auto e0 = train::epoch_permutation(5, 11, 0), e1 = train::epoch_permutation(5, 11, 1);
  for (int64_t i = 0; i < 10; ++i) {
    const auto pos = st.at(i);
    EXPECT_EQ(pos.epoch, i / 5);
    EXPECT_EQ(pos.index, i < 5 ? e0[size_t(i)] : e1[size_t(i - 5)]);
  }
  EXPECT_EQ(st.at(2).index, e0[2]);  // random access after moving on
  EXPECT_EQ(train::sample_seed(1, 2, 3), train::sample_seed(1, 2, 3));
  EXPECT_NE(train::sample_seed(1, 2, 3), train::sample_seed(1, 3, 2));
  EXPECT_NE(train::sample_seed(1, 2, 3), train::sample_seed(2, 2, 3));
}
