// Damaged GGUF files (made at test time from the reference file and from small synthetic
// ones): every case ends in diffuse::Error, or in a load when the damage lands in tensor data;
// never a crash, a hang or a huge allocation.
#include <gtest/gtest.h>

#include <random>

#include "io/weights.h"
#include "test_util.h"
#include "weights_testing.h"

using namespace diffuse;
using namespace diffuse::test;

namespace {

constexpr uint64_t kCap = uint64_t(4) << 30;

uint64_t le_at(const std::string& b, size_t pos, int n) {
  uint64_t v = 0;
  for (int k = 0; k < n; ++k) v |= uint64_t(uint8_t(b[pos + size_t(k)])) << (8 * k);
  return v;
}

// End of the tensor-info table (where the aligned data section begins, before padding).
size_t header_end(const std::string& b) {
  size_t p = 8;
  const uint64_t n_tensors = le_at(b, p, 8), n_kv = le_at(b, p + 8, 8);
  p += 16;
  EXPECT_EQ(n_kv, 0u) << "the reference GGUF was expected to carry no metadata";
  for (uint64_t i = 0; i < n_tensors; ++i) {
    p += 8 + le_at(b, p, 8);
    const uint64_t nd = le_at(b, p, 4);
    p += 4 + 8 * nd + 4 + 8;
  }
  return p;
}

}  // namespace

TEST(corrupt_gguf, TruncatedAtManyLengths) {
  DF_REQUIRE_REF(gguf, "sd1-tiny/sd1-tiny-q8_0.gguf");
  AddressSpaceCap cap(kCap);
  const std::string full = read_bytes(gguf);
  const size_t h = header_end(full);
  const std::string path = temp_dir() + "/trunc.gguf";
  for (size_t len :
       {size_t(0), size_t(3), size_t(4), size_t(7), size_t(8), size_t(16), size_t(23), size_t(24),
        size_t(40), h / 2, h - 1, h, h + 1, (h + full.size()) / 2, full.size() - 1}) {
    write_bytes(path, full.substr(0, len));
    std::string msg = error_of([&] { io::load_gguf(path); });
    EXPECT_NE(msg, "") << "truncated at " << len << " loaded";
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(error_of([&] { io::load_weights(path); }), "") << len;
  }
}

TEST(corrupt_gguf, RandomBitFlipsInTheHeader) {
  DF_REQUIRE_REF(gguf, "sd1-tiny/sd1-tiny-q8_0.gguf");
  AddressSpaceCap cap(kCap);
  const std::string full = read_bytes(gguf);
  const size_t h = header_end(full);
  const std::string path = temp_dir() + "/flip.gguf";
  write_bytes(path, full);
  std::mt19937 rng(99);
  int errors = 0, loads = 0;
  for (int it = 0; it < 300; ++it) {
    // half the flips in the fixed header and the first tensor infos, where sizes live
    const size_t region = it % 2 ? h : 512;
    std::vector<std::pair<size_t, int>> flips;
    for (int k = 0, n = 1 + int(rng() % 3); k < n; ++k)
      flips.push_back({rng() % region, int(rng() % 8)});
    const int e = load_with_flips(path, flips, "flip iteration " + std::to_string(it));
    errors += e;
    loads += 1 - e;
  }
  std::printf("gguf header flips: %d errors, %d loads\n", errors, loads);
  EXPECT_GT(errors, 0);
  ASSERT_EQ(read_bytes(path), full);
}

TEST(corrupt_gguf, HugeCountsLengthsAndOffsets) {
  DF_REQUIRE_REF(gguf, "sd1-tiny/sd1-tiny-q8_0.gguf");
  AddressSpaceCap cap(kCap);
  const std::string full = read_bytes(gguf);
  const size_t name_len = le_at(full, 24, 8);
  const size_t ndims_at = 24 + 8 + name_len, dim0_at = ndims_at + 4;
  const size_t nd = le_at(full, ndims_at, 4);
  const size_t type_at = dim0_at + 8 * nd, offset_at = type_at + 4;
  struct Patch {
    const char* what;
    size_t pos;
    int n;
    uint64_t value;
  };
  const Patch patches[] = {
      {"version", 4, 4, 3u << 24},
      {"tensor count", 8, 8, ~uint64_t(0)},
      {"tensor count", 8, 8, uint64_t(1) << 40},
      {"tensor count", 8, 8, le_at(full, 8, 8) + 1},
      {"metadata count", 16, 8, uint64_t(1) << 62},
      {"metadata count", 16, 8, 1},
      {"name length", 24, 8, ~uint64_t(0)},
      {"name length", 24, 8, uint64_t(1) << 62},
      {"dim count", ndims_at, 4, 0xffffffffu},
      {"dim count", ndims_at, 4, 5},
      {"dim", dim0_at, 8, uint64_t(1) << 62},
      {"dim", dim0_at, 8, uint64_t(1) << 47},
      {"dim", dim0_at, 8, le_at(full, dim0_at, 8) * 4096},
      {"type", type_at, 4, 99},
      {"type", type_at, 4, 12},
      {"offset", offset_at, 8, ~uint64_t(0)},
      {"offset", offset_at, 8, uint64_t(full.size())},
  };
  const std::string path = temp_dir() + "/huge.gguf";
  for (const Patch& p : patches) {
    std::string b = full;
    put_le(b, p.pos, p.value, p.n);
    write_bytes(path, b);
    std::string msg = error_of([&] { io::load_weights(path); });
    EXPECT_NE(msg, "") << p.what << " = " << p.value << " loaded";
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
}

TEST(corrupt_gguf, BadMetadataValues) {
  AddressSpaceCap cap(kCap);
  auto file = [](uint32_t type, const std::string& value) {
    std::string b = "GGUF";
    auto le = [&](uint64_t v, int n) {
      for (int k = 0; k < n; ++k) b.push_back(char(uint8_t(v >> (8 * k))));
    };
    le(3, 4);
    le(0, 8);
    le(1, 8);
    le(17, 8);
    b += "general.alignment";
    le(type, 4);
    return b + value;
  };
  auto le_s = [](uint64_t v, int n) {
    std::string s;
    for (int k = 0; k < n; ++k) s.push_back(char(uint8_t(v >> (8 * k))));
    return s;
  };
  const std::string cases[] = {
      file(4, le_s(0, 4)),                               // alignment 0
      file(4, le_s(48, 4)),                              // not a power of two
      file(10, le_s(uint64_t(1) << 40, 8)),              // absurd
      file(6, le_s(0x42000000, 4)),                      // a float
      file(13, le_s(32, 4)),                             // unknown value type
      file(8, le_s(~uint64_t(0), 8)),                    // string longer than the file
      file(9, le_s(0, 4) + le_s(uint64_t(1) << 61, 8)),  // array of 2^61 u8
      file(9, le_s(8, 4) + le_s(uint64_t(1) << 60, 8)),  // array of 2^60 strings
      file(9, le_s(9, 4) + le_s(3, 8) + le_s(9, 4) + le_s(3, 8) + le_s(9, 4) + le_s(3, 8) +
                  le_s(9, 4) + le_s(1, 8)),  // nested too deep
      file(9, le_s(77, 4) + le_s(1, 8)),     // array of unknown type
      file(4, le_s(32, 2)),                  // truncated value
  };
  const std::string path = temp_dir() + "/meta.gguf";
  for (const std::string& b : cases) {
    write_bytes(path, b);
    std::string msg = error_of([&] { io::load_gguf(path); });
    EXPECT_NE(msg, "") << "loaded";
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
  write_bytes(path, file(4, le_s(64, 4)));  // and the well-formed one loads
  EXPECT_TRUE(io::load_gguf(path).empty());
}
