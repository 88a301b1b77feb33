// Damaged PyTorch zip checkpoints (made at test time from the reference .ckpt): truncated
// archives, bit flips in the zip headers, patched sizes, and damaged pickles re-zipped with a
// valid CRC so that the unpickler itself sees them. Every case ends in diffuse::Error, or in a
// load when the damage is harmless; never a crash, a hang or a huge allocation.
#include <gtest/gtest.h>

#include <random>

#include "io/torch_pickle.h"
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

// Offset of the central-directory record of the entry whose name ends with `tail`.
size_t central_record(const std::string& zip, const std::string& tail) {
  for (size_t p = zip.rfind("PK\x05\x06"), cd = le_at(zip, p + 16, 4); cd + 46 < zip.size();) {
    const size_t n = le_at(zip, cd + 28, 2);
    const std::string name = zip.substr(cd + 46, n);
    if (name.size() >= tail.size() &&
        name.compare(name.size() - tail.size(), tail.size(), tail) == 0)
      return cd;
    cd += 46 + n + le_at(zip, cd + 30, 2) + le_at(zip, cd + 32, 2);
  }
  ADD_FAILURE() << "no central record for " << tail;
  return 0;
}

std::string& pickle_of(std::vector<std::pair<std::string, std::string>>& entries) {
  for (auto& [name, data] : entries)
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "data.pkl") == 0) return data;
  throw std::runtime_error("no data.pkl");
}

// A pickle mutated in one of several ways (bytes changed, cut, dropped or duplicated).
std::string mutate(std::string p, std::mt19937& rng) {
  switch (rng() % 4) {
    case 0:
      for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) p[rng() % p.size()] = char(rng());
      break;
    case 1:
      p.resize(rng() % p.size());
      break;
    case 2:
      p.erase(rng() % p.size(), 1 + rng() % 4);
      break;
    default: {
      size_t at = rng() % p.size();
      p.insert(at, p.substr(at, 1 + rng() % 8));
    }
  }
  return p;
}

}  // namespace

TEST(corrupt_ckpt, TruncatedAtManyLengths) {
  DF_REQUIRE_REF(ckpt, "sd1-tiny/sd1-tiny.ckpt");
  AddressSpaceCap cap(kCap);
  const std::string full = read_bytes(ckpt);
  const std::string path = temp_dir() + "/trunc.ckpt";
  for (size_t len :
       {size_t(0), size_t(3), size_t(4), size_t(7), size_t(8), size_t(30), size_t(100),
        size_t(70000), full.size() / 2, full.size() - 100, full.size() - 22, full.size() - 1}) {
    write_bytes(path, full.substr(0, len));
    std::string msg = error_of([&] { io::load_weights(path); });
    EXPECT_NE(msg, "") << "truncated at " << len << " loaded";
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
}

TEST(corrupt_ckpt, RandomBitFlipsInTheZipHeaders) {
  DF_REQUIRE_REF(ckpt, "sd1-tiny/sd1-tiny.ckpt");
  AddressSpaceCap cap(kCap);
  const std::string full = read_bytes(ckpt);
  const size_t cd = le_at(full, full.rfind("PK\x05\x06") + 16, 4);
  const std::string path = temp_dir() + "/flip.ckpt";
  write_bytes(path, full);
  std::mt19937 rng(7);
  int errors = 0, loads = 0;
  for (int it = 0; it < 150; ++it) {
    // alternate: the first local header and pickle, and the central directory + its end
    std::vector<std::pair<size_t, int>> flips;
    for (int k = 0, n = 1 + int(rng() % 3); k < n; ++k) {
      size_t p = it % 2 ? cd + rng() % (full.size() - cd) : rng() % 4096;
      flips.push_back({p, int(rng() % 8)});
    }
    const int e = load_with_flips(path, flips, "flip iteration " + std::to_string(it));
    errors += e;
    loads += 1 - e;
  }
  std::printf("ckpt zip header flips: %d errors, %d loads\n", errors, loads);
  EXPECT_GT(errors, 0);
  ASSERT_EQ(read_bytes(path), full);
}

TEST(corrupt_ckpt, HugeSizesInTheZipDirectory) {
  DF_REQUIRE_REF(ckpt, "sd1-tiny/sd1-tiny.ckpt");
  AddressSpaceCap cap(kCap);
  const std::string full = read_bytes(ckpt);
  const size_t eocd = full.rfind("PK\x05\x06");
  const size_t z64 = full.rfind("PK\x06\x06");  // torch writes a zip64 end record too
  ASSERT_NE(z64, std::string::npos);
  const size_t pkl = central_record(full, "data.pkl"), d0 = central_record(full, "/data/0");
  struct Patch {
    const char* what;
    size_t pos;
    int n;
    uint64_t value;
  };
  const Patch patches[] = {
      {"data.pkl size", pkl + 24, 4, 0xffffffffu},
      {"data.pkl size", pkl + 24, 4, 0x7fffffffu},
      {"data.pkl compressed size", pkl + 20, 4, 0x7fffffffu},
      {"data.pkl size and compressed size", pkl + 20, 8, 0x7fffffff7fffffffu},
      {"data.pkl local header offset", pkl + 42, 4, 0x7fffffffu},
      {"storage 0 size", d0 + 24, 4, 0x40000000u},
      {"storage 0 size and compressed size", d0 + 20, 8, 0x4000000040000000u},
      {"storage 0 compression method", d0 + 10, 2, 8},
      {"zip64 entry count", z64 + 32, 8, uint64_t(1) << 40},
      {"zip64 directory size", z64 + 40, 8, uint64_t(1) << 40},
      {"zip64 directory offset", z64 + 48, 8, uint64_t(1) << 40},
      {"zip64 directory offset", z64 + 48, 8, 0},
  };
  const std::string path = temp_dir() + "/huge.ckpt";
  for (const Patch& p : patches) {
    std::string b = full;
    put_le(b, p.pos, p.value, p.n);
    write_bytes(path, b);
    std::string msg = error_of([&] { io::load_weights(path); });
    EXPECT_NE(msg, "") << p.what << " patched: loaded";
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
  // The 32-bit end record only repeats the zip64 one, which readers use instead: damage there
  // may load, but then completely.
  const size_t n_tensors = io::load_weights(ckpt).size();
  for (size_t field : {eocd + 8, eocd + 10, eocd + 12, eocd + 16}) {
    std::string b = full;
    put_le(b, field, 0x7ffffff0u, 4);
    write_bytes(path, b);
    size_t loaded = 0;
    error_or_load([&] { loaded = io::load_weights(path).size(); }, "end record");
    EXPECT_TRUE(loaded == 0 || loaded == n_tensors) << loaded;
  }
}

TEST(corrupt_ckpt, DamagedPicklesNeverCrashTheUnpickler) {
  DF_REQUIRE_REF(ckpt, "sd1-tiny/sd1-tiny.ckpt");
  AddressSpaceCap cap(kCap);
  auto entries = read_zip(ckpt);
  const std::string pickle = pickle_of(entries);
  std::mt19937 rng(2024);
  int errors = 0;
  const int n = 1500;
  for (int it = 0; it < n; ++it) {
    std::string p = mutate(pickle, rng);
    errors += error_or_load([&] { io::parse_torch_pickle(p, "fuzz.ckpt"); },
                            "mutation " + std::to_string(it));
  }
  std::printf("pickle mutations: %d of %d refused\n", errors, n);
  EXPECT_GT(errors, 0);
}

TEST(corrupt_ckpt, DamagedPicklesInAValidZip) {
  DF_REQUIRE_REF(ckpt, "sd1-tiny/sd1-tiny.ckpt");
  AddressSpaceCap cap(kCap);
  auto entries = read_zip(ckpt);
  std::string& pkl = pickle_of(entries);
  const std::string pickle = pkl;
  const std::string path = temp_dir() + "/rezip.ckpt";
  std::mt19937 rng(5);
  int errors = 0, loads = 0;
  for (int it = 0; it < 30; ++it) {
    pkl = mutate(pickle, rng);
    write_zip(path, entries);
    int e = error_or_load([&] { io::load_weights(path); }, "rezip " + std::to_string(it));
    errors += e;
    loads += 1 - e;
  }
  std::printf("re-zipped damaged pickles: %d errors, %d loads\n", errors, loads);
  EXPECT_GT(errors, 0);
}

TEST(corrupt_ckpt, HugeClaimsInsideThePickle) {
  AddressSpaceCap cap(kCap);
  auto dict_with = [](const std::string& raw_value) {
    PickleWriter w;
    w.op('}').mark().str("x").raw(raw_value).op('u');
    return w.finish();
  };
  auto tensor = [](int64_t numel, int64_t offset, std::vector<int64_t> size,
                   std::vector<int64_t> stride) {
    PickleWriter w;
    w.op('}').mark().str("w").tensor("FloatStorage", "0", numel, offset, size, stride).op('u');
    return w.finish();
  };
  const int64_t big = int64_t(1) << 47;
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"string length", dict_with("X\xff\xff\xff\xff"
                                  "abc")},
      {"bytes8 length", dict_with(std::string("\x8e\xff\xff\xff\xff\xff\xff\xff\x7f", 9))},
      {"long4 length", dict_with("\x8b\xff\xff\xff\x7f")},
      {"negative binstring", dict_with("T\xff\xff\xff\xff")},
      {"memo index", dict_with("j\xff\xff\xff\xff")},
      {"storage numel", tensor(int64_t(1) << 50, 0, {4}, {1})},
      {"storage numel past the entry", tensor(1 << 20, 0, {1 << 20}, {1})},
      {"negative numel", tensor(-4, 0, {4}, {1})},
      {"shape", tensor(4, 0, {big, big}, {1, 1})},
      {"shape overflow", tensor(4, 0, {4, int64_t(1) << 62}, {1, 1})},
      {"stride overflow", tensor(4, 0, {4, 4}, {int64_t(1) << 62, 1})},
      {"expanded view", tensor(4, 0, {1 << 20, 1 << 20}, {0, 0})},
      {"offset", tensor(4, int64_t(1) << 62, {4}, {1})},
      {"negative offset", tensor(4, -1, {4}, {1})},
      {"negative stride", tensor(4, 3, {4}, {-1})},
      {"size/stride length", tensor(4, 0, {2, 2}, {1})},
  };
  const std::string data(16, '\0');
  const std::string path = temp_dir() + "/claims.ckpt";
  for (auto& [what, pickle] : cases) {
    write_zip(path, {{"a/data.pkl", pickle}, {"a/data/0", data}});
    std::string msg = error_of([&] { io::load_weights(path); });
    EXPECT_NE(msg, "") << what << ": loaded";
    EXPECT_NE(msg.find(path), std::string::npos) << what << ": " << msg;
  }
}
