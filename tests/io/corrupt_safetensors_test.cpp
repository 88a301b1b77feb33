// Damaged safetensors files (made at test time from the reference file): every case ends in
// diffuse::Error, or in a load when the damage lands in tensor data; never a crash, a hang or
// a huge allocation.
#include <gtest/gtest.h>

#include <random>

#include "io/safetensors.h"
#include "io/weights.h"
#include "test_util.h"
#include "weights_testing.h"

using namespace diffuse;
using namespace diffuse::test;

namespace {

constexpr uint64_t kCap = uint64_t(4) << 30;

uint64_t header_len_of(const std::string& b) {
  uint64_t n = 0;
  for (int k = 0; k < 8; ++k) n |= uint64_t(uint8_t(b[size_t(k)])) << (8 * k);
  return n;
}

std::string with_header(const std::string& header, const std::string& data) {
  std::string b(8, '\0');
  put_le(b, 0, header.size(), 8);
  return b + header + data;
}

}  // namespace

TEST(corrupt_safetensors, TruncatedAtManyLengths) {
  DF_REQUIRE_REF(sf, "sd1-tiny/sd1-tiny.safetensors");
  AddressSpaceCap cap(kCap);
  const std::string full = read_bytes(sf);
  const size_t h = 8 + header_len_of(full);
  const std::string path = temp_dir() + "/trunc.safetensors";
  for (size_t len : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), h / 2, h - 1, h, h + 1,
                     (h + full.size()) / 2, full.size() - 1}) {
    write_bytes(path, full.substr(0, len));
    std::string msg = error_of([&] { io::load_safetensors(path); });
    EXPECT_NE(msg, "") << "truncated at " << len << " loaded";
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(error_of([&] { io::load_weights(path); }), "") << len;
  }
}

TEST(corrupt_safetensors, RandomBitFlipsInTheHeader) {
  DF_REQUIRE_REF(sf, "sd1-tiny/sd1-tiny.safetensors");
  AddressSpaceCap cap(kCap);
  const std::string full = read_bytes(sf);
  const size_t h = 8 + header_len_of(full);
  const std::string path = temp_dir() + "/flip.safetensors";
  write_bytes(path, full);
  std::mt19937 rng(1234);
  int errors = 0, loads = 0;
  for (int it = 0; it < 300; ++it) {
    const int nflips = 1 + int(rng() % 3);
    std::vector<std::pair<size_t, int>> flips;
    for (int k = 0; k < nflips; ++k) flips.push_back({rng() % h, int(rng() % 8)});
    const int e = load_with_flips(path, flips, "flip iteration " + std::to_string(it));
    errors += e;
    loads += 1 - e;
  }
  std::printf("safetensors header flips: %d errors, %d loads\n", errors, loads);
  EXPECT_GT(errors, 0);
  ASSERT_EQ(read_bytes(path), full);  // every flip was undone
}

TEST(corrupt_safetensors, HugeHeaderLengths) {
  DF_REQUIRE_REF(sf, "sd1-tiny/sd1-tiny.safetensors");
  AddressSpaceCap cap(kCap);
  std::string b = read_bytes(sf);
  const std::string path = temp_dir() + "/huge.safetensors";
  for (uint64_t len : {~uint64_t(0), uint64_t(1) << 63, uint64_t(1) << 40, uint64_t(b.size()),
                       uint64_t(b.size() - 7), uint64_t(0)}) {
    put_le(b, 0, len, 8);
    write_bytes(path, b);
    std::string msg = error_of([&] { io::load_weights(path); });
    EXPECT_NE(msg.find("corrupt safetensors header"), std::string::npos) << len << ": " << msg;
  }
}

TEST(corrupt_safetensors, JsonGarbage) {
  AddressSpaceCap cap(kCap);
  const std::string data(64, '\x11');
  const std::string t = R"("dtype":"F32","shape":[4],"data_offsets":[0,16])";
  std::vector<std::string> headers = {
      "{",
      "{}}",
      "[]",
      "{\"a\":1}",
      "{\"a\":\"x\"}",
      "{\"a\":{" + t + "}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}",
      "{\"a\":{\"dtype\":\"F99\",\"shape\":[4],\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4.5],\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e30],\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551615],\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,16]}}",
      // products that overflow 64 bits and wrap to 4
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627775,1099511627775],\"data_offsets\":[0,16]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,18446744073709551615]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[-16,0]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16,32]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[56,72]}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}",
      "{\"a\":{" + t + "},\"b\":[1,2]}",
      std::string(100000, '[') + std::string(100000, ']'),
      std::string("{\"\xff\xfe\":1}"),
      std::string("\0\0\0\0", 4),
      "{\"a\":{" + t + "}, \"__metadata__\": 5}  trailing",
  };
  const std::string path = temp_dir() + "/garbage.safetensors";
  for (const std::string& hdr : headers) {
    write_bytes(path, with_header(hdr, data));
    std::string msg = error_of([&] { io::load_safetensors(path); });
    EXPECT_NE(msg, "") << "loaded: " << hdr.substr(0, 120);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
  // a valid header around the same data loads, and a non-object __metadata__ is ignored
  write_bytes(path, with_header("{\"a\":{" + t + "}, \"__metadata__\": 5}", data));
  EXPECT_EQ(io::load_weights(path).at("a").shape(), Shape{4});
}
