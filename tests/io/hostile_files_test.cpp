// Hostile weight files (the probe's findings, and the same attacks built here): each is one
// clear diffuse::Error, fast and small, before anything large is allocated.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "io/folder_path.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "test_util.h"
#include "weights_testing.h"

using namespace diffuse;
using namespace diffuse::test;

namespace {

constexpr uint64_t kCap = uint64_t(4) << 30;

// The probe's reproducer `name` (../probe beside the reference), or "" when absent.
std::string probe_file(const std::string& name) {
  const auto p = std::filesystem::path(reference_dir()) / ".." / "probe" / name;
  return std::filesystem::exists(p) ? p.lexically_normal().string() : "";
}

// Loads `path`; expects an Error holding `what`, within `seconds`.
void expect_fast_error(const std::string& path, const std::string& what, double seconds = 3) {
  AddressSpaceCap cap(kCap);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { io::load_weights(path); });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(msg.find(what), std::string::npos) << path << ": " << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_LT(s, seconds) << path;
}

std::string le64(uint64_t v) {
  std::string b(8, '\0');
  for (int k = 0; k < 8; ++k) b[size_t(k)] = char(uint8_t(v >> (8 * k)));
  return b;
}

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

// A torch zip checkpoint of one pickle and its storages.
void write_ckpt(const std::string& path, const std::string& pickle,
                std::vector<std::pair<std::string, std::string>> storages = {}) {
  storages.insert(storages.begin(), {"archive/data.pkl", pickle});
  write_zip(path, storages);
}

TEST(HostileFiles, ProbeCheckpointBombs) {
  const std::pair<const char*, const char*> cases[] = {
      {"ckpt-expand-bomb.ckpt", "expanded tensor views"},
      {"ckpt-quadratic-set.ckpt", "too many items"},
      {"ckpt-zipbomb-400x4MB.ckpt", "zip bomb"}};
  int found = 0;
  for (const auto& [name, what] : cases) {
    const std::string path = probe_file(name);
    if (path.empty()) continue;
    ++found;
    expect_fast_error(path, what);
  }
  if (found == 0) GTEST_SKIP() << "the probe's files are absent (../probe)";
}

TEST(HostileFiles, ExpandedViewsAreCappedInAll) {
  // 40 tensors, each viewing one stored float 2^24 times (each alone within the per-tensor cap).
  PickleWriter w;
  w.op('}').mark();
  for (int i = 0; i < 40; ++i) w.str(str("t", i)).tensor("FloatStorage", "0", 1, 0, {1 << 24}, {0});
  w.op('u');
  const std::string path = temp_dir() + "/expand.ckpt";
  write_ckpt(path, w.finish(), {{"archive/data/0", std::string(4, '\0')}});
  expect_fast_error(path, "expanded tensor views");
  // One such view alone is still read (an expanded tensor is legal).
  PickleWriter one;
  one.op('}').str("t").tensor("FloatStorage", "0", 1, 0, {1000}, {0}).op('s');
  write_ckpt(path, one.finish(), {{"archive/data/0", std::string(4, '\0')}});
  EXPECT_EQ(io::load_weights(path).at("t").numel(), 1000);
}

TEST(HostileFiles, PickleWorkIsBoundedByItsSize) {
  // A 100k-element list, memoized, then set(list) built from it 200 times: 20M items kept.
  PickleWriter w;
  w.op(']').op('q').byte(0).mark();
  for (int i = 0; i < 100000; ++i) w.integer(7);
  w.op('e').op('0');
  for (int i = 0; i < 200; ++i)
    w.global("builtins", "set").op('h').byte(0).op(0x85).op('R').op('0');
  w.op('}');
  const std::string path = temp_dir() + "/sets.ckpt";
  write_ckpt(path, w.finish());
  expect_fast_error(path, "too many items");
}

TEST(HostileFiles, ZipEntriesAreCappedInAll) {
  // 60 deflated entries of 4 MB zeros each: every entry is within the per-entry ratio cap,
  // their total (240 MB) is far beyond what the small file can hold.
  const std::string path = temp_dir() + "/zipbomb.ckpt";
  const std::string zeros(4 << 20, '\0');
  std::vector<std::pair<std::string, std::string>> entries;
  PickleWriter w;
  w.op('}').mark();
  for (int i = 0; i < 60; ++i) {
    w.str(str("t", i)).tensor("FloatStorage", std::to_string(i), 1 << 20, 0, {1 << 20}, {1});
  }
  w.op('u');
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(z, nullptr);
  const std::string pickle = w.finish();
  auto add = [&](const std::string& name, const std::string& data, bool deflate) {
    zip_source_t* s = zip_source_buffer(z, data.data(), data.size(), 0);
    const zip_int64_t idx = zip_file_add(z, name.c_str(), s, ZIP_FL_OVERWRITE);
    ASSERT_GE(idx, 0);
    zip_set_file_compression(z, zip_uint64_t(idx), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 9);
  };
  add("archive/data.pkl", pickle, false);
  for (int i = 0; i < 60; ++i) add(str("archive/data/", i), zeros, true);
  ASSERT_EQ(zip_close(z), 0);
  ASSERT_LT(std::filesystem::file_size(path), 2u << 20);
  expect_fast_error(path, "zip bomb");
}

TEST(HostileFiles, CheckpointStorageSizesAreCheckedBeforeReading) {
  // The second tensor's storage is too small for what the pickle claims: the error comes
  // before the first (large) storage is read.
  PickleWriter w;
  w.op('}').mark();
  w.str("a").tensor("FloatStorage", "0", 1 << 18, 0, {1 << 18}, {1});
  w.str("b").tensor("FloatStorage", "1", 100, 0, {100}, {1});
  w.op('u');
  const std::string path = temp_dir() + "/short.ckpt";
  write_ckpt(path, w.finish(),
             {{"archive/data/0", std::string(4 << 18, '\0')}, {"archive/data/1", "x"}});
  expect_fast_error(path, "holds 1 bytes, but the pickle claims 100 elements");
}

TEST(HostileFiles, SafetensorsJunkHeaderFailsBeforeParsing) {
  std::string header = "{";
  for (int i = 0; i < 200000; ++i) header += "\"j" + std::to_string(i) + "\":0,";
  header += "\"x\":0}";
  const std::string path = temp_dir() + "/junk.safetensors";
  write_bytes(path, safetensors_bytes(header, "abcd"));
  expect_fast_error(path, "a header larger than its data", 1.0);
  // A deeply nested header is refused as such, not parsed into a DOM.
  write_bytes(path, safetensors_bytes("{\"a\":" + std::string(5000, '['), std::string(8192, '\0')));
  expect_fast_error(path, "nested more than");
}

TEST(HostileFiles, SafetensorsOverlappingOrAliasedDataIsRefused) {
  const std::string path = temp_dir() + "/overlap.safetensors";
  auto file = [&](const std::string& a_off, const std::string& b_off) {
    const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":)" + a_off +
                          R"(},"b":{"dtype":"F32","shape":[2],"data_offsets":)" + b_off + "}}";
    write_bytes(path, safetensors_bytes(h, std::string(16, '\0')));
  };
  file("[0,8]", "[8,16]");
  EXPECT_EQ(io::load_safetensors(path).size(), 2u);
  file("[0,8]", "[0,8]");  // aliased
  expect_fast_error(path, "overlaps another tensor");
  file("[4,12]", "[0,8]");  // overlapping, listed after
  expect_fast_error(path, "overlaps another tensor");
  file("[0,8]", "[4,12]");
  expect_fast_error(path, "overlaps another tensor");
  // Every tensor's byte size matches its dtype and shape.
  const std::string h = R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})";
  write_bytes(path, safetensors_bytes(h, std::string(8, '\0')));
  expect_fast_error(path, "holds 8 bytes");
}

TEST(HostileFiles, GgufIntegerWeightsAreRefused) {
  const std::string path = temp_dir() + "/int.gguf";
  for (uint32_t type : {24u, 26u, 27u}) {  // I8, I32, I64
    const size_t esz = type == 24 ? 1 : type == 26 ? 4 : 8;
    GgufWriter w;
    w.tensor("model.diffusion_model.out.2.weight", {4}, type, std::string(4 * esz, '\1'));
    write_bytes(path, w.bytes());
    expect_fast_error(path, "integer type");
  }
  GgufWriter ids;  // ids stay integers
  ids.tensor("cond_stage_model.transformer.text_model.embeddings.position_ids", {4}, 26,
             std::string(16, '\0'));
  write_bytes(path, ids.bytes());
  EXPECT_EQ(io::load_weights(path).size(), 1u);
}

TEST(HostileFiles, NamesInsideModelFilesStayInTheFolder) {
  EXPECT_EQ(io::file_in_folder("m/unet", "a-00001.safetensors", "idx"),
            std::filesystem::path("m/unet/a-00001.safetensors"));
  EXPECT_EQ(io::file_in_folder("m", "sub/a.bin", "idx"), std::filesystem::path("m/sub/a.bin"));
  for (const char* bad : {"../x.safetensors", "sub/../../x", "/etc/passwd", "", ".."}) {
    const std::string msg = error_of([&] { io::file_in_folder("m/unet", bad, "INDEX"); });
    EXPECT_NE(msg.find("INDEX names"), std::string::npos) << bad << ": " << msg;
  }
}

}  // namespace
