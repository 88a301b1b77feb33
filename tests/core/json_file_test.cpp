// Reading JSON and small files with limits (core/json_file.h): hostile inputs are one clear
// Error, fast, never a crash or a wait.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/json_file.h"
#include "test_util.h"

using namespace diffuse;

namespace {

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = test::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The Error's message, or "" when `fn` did not throw one.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonFile, ParsesNormalConfigs) {
  const auto j = parse_json(R"({"a": [1, {"b": [2, 3]}], "s": "[[[{{{"})", "cfg");
  EXPECT_EQ(j["a"][1]["b"][1], 3);
  EXPECT_EQ(j["s"], "[[[{{{");  // brackets inside strings don't count as nesting
  EXPECT_EQ(json_nesting_depth(R"({"a": [1, {"b": [2, 3]}], "s": "\"[[[{{{"})"), 4);
}

TEST(JsonFile, DepthAtTheLimitIsAcceptedAndOneMoreRefused) {
  const std::string ok = std::string(kJsonMaxDepth, '[') + std::string(kJsonMaxDepth, ']');
  EXPECT_NO_THROW(parse_json(ok, "ok"));
  const std::string deep = "[" + ok + "]";
  const std::string msg = error_of([&] { parse_json(deep, "unet/config.json"); });
  EXPECT_NE(msg.find("unet/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nested more than"), std::string::npos) << msg;
}

TEST(JsonFile, MillionBracketsAndDeepObjectsFailFast) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string brackets(1000000, '[');
  std::string objects;
  for (int i = 0; i < 60000; ++i) objects += "{\"a\":";
  for (const std::string* text : std::initializer_list<const std::string*>{&brackets, &objects}) {
    const std::string path = write_file("deep.json", *text);
    const std::string msg = error_of([&] { read_json_file(path); });
    EXPECT_NE(msg.find("nested more than"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
}

TEST(JsonFile, InvalidJsonNamesTheFile) {
  const std::string path = write_file("bad.json", "{\"a\": ");
  const std::string msg = error_of([&] { read_json_file(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
}

TEST(JsonFile, SizeLimitIsCheckedBeforeReading) {
  const std::string path = write_file("big.json", "[" + std::string(4096, ' ') + "]");
  EXPECT_NO_THROW(read_json_file(path, 8192));
  const std::string msg = error_of([&] { read_json_file(path, 1024); });
  EXPECT_NE(msg.find("more than the limit"), std::string::npos) << msg;
}

TEST(JsonFile, SpecialFilesAreRefusedWithoutBlocking) {
  const std::string fifo = test::temp_dir() + "/config-fifo.json";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // Without a writer, opening the FIFO for reading would wait forever.
  std::string msg = error_of([&] { read_json_file(fifo); });
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
  msg = error_of([&] { read_file_limited(test::temp_dir(), 100); });
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
  msg = error_of([&] { read_file_limited(test::temp_dir() + "/missing.json", 100); });
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
}

}  // namespace
