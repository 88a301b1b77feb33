#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/image.h"
#include "test_util.h"

using namespace diffuse;

TEST(Image, PngRoundTripWithTextChunks) {
  io::Image img;
  img.width = 5;
  img.height = 3;
  img.channels = 3;
  for (int i = 0; i < 5 * 3 * 3; ++i) img.pixels.push_back(uint8_t(i * 7));
  std::string path = test::temp_dir() + "/a.png";
  std::map<std::string, std::string> text = {
      {"parameters", "a cat\nNegative prompt: dog\nSteps: 20, Seed: 1"},
      {"utf8", "caf\xc3\xa9 \xf0\x9f\x90\xb1"}};
  io::save_png(path, img, text);
  io::Image back = io::load_image(path);
  EXPECT_EQ(back.width, 5);
  EXPECT_EQ(back.height, 3);
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.pixels, img.pixels);
  EXPECT_EQ(io::read_png_text(path), text);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Image, ConvertsChannels) {
  io::Image img;
  img.width = 2;
  img.height = 2;
  img.channels = 1;
  img.pixels = {0, 100, 200, 255};
  std::string path = test::temp_dir() + "/g.png";
  io::save_png(path, img);
  io::Image rgb = io::load_image(path, 3);
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.pixels[3], 100);
  EXPECT_EQ(rgb.pixels[4], 100);
}

TEST(Image, BadFilesAreClearErrors) {
  std::string path = test::temp_dir() + "/bad.png";
  std::ofstream(path) << "this is not an image";
  try {
    io::load_image(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  EXPECT_THROW(io::load_image(test::temp_dir() + "/missing.png"), Error);
  EXPECT_THROW(io::read_png_text(path), Error);
  io::Image bad;
  bad.width = 2;
  bad.height = 2;
  bad.channels = 3;
  EXPECT_THROW(io::save_png(test::temp_dir() + "/x.png", bad), Error);
  EXPECT_FALSE(std::filesystem::exists(test::temp_dir() + "/x.png"));
}
