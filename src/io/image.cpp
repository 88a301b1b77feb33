#include "io/image.h"

#include <cstring>

#include "core/error.h"
#include "io/mmap_file.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace diffuse::io {

namespace {

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  static uint32_t table[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

void put_be32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s.push_back(char((v >> (8 * i)) & 0xff));
}

uint32_t get_be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

std::string chunk(const std::string& type, const std::string& data) {
  std::string c;
  put_be32(c, uint32_t(data.size()));
  std::string body = type + data;
  c += body;
  put_be32(c, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
  return c;
}

bool is_ascii(const std::string& s) {
  for (unsigned char ch : s)
    if (ch >= 0x80) return false;
  return true;
}

}  // namespace

namespace {

// Decodes n bytes; `what` prefixes the errors ("PATH: " or ""). The size is read from the
// header and checked against max_side before any pixel is allocated.
Image decode(const char* bytes, size_t size, int channels, int max_side, const std::string& what) {
  DF_CHECK(channels == 0 || channels == 1 || channels == 3 || channels == 4, what,
           "bad channel count ", channels);
  DF_CHECK(size > 0 && size < (size_t(1) << 31), what, "not an image (", size, " bytes)");
  const auto* p = reinterpret_cast<const stbi_uc*>(bytes);
  const int n_bytes = int(size);
  int w = 0, h = 0, n = 0;
  DF_CHECK(stbi_info_from_memory(p, n_bytes, &w, &h, &n), what,
           "cannot read the image: ", stbi_failure_reason());
  DF_CHECK(max_side <= 0 || (w <= max_side && h <= max_side), what, "the image is ", w, "x", h,
           ", larger than ", max_side, "x", max_side);
  unsigned char* data = stbi_load_from_memory(p, n_bytes, &w, &h, &n, channels);
  DF_CHECK(data, what, "cannot read the image: ", stbi_failure_reason());
  Image img;
  img.width = w;
  img.height = h;
  img.channels = channels ? channels : n;
  img.pixels.assign(data, data + size_t(w) * size_t(h) * size_t(img.channels));
  stbi_image_free(data);
  return img;
}

}  // namespace

Image load_image(const std::string& path, int channels, int max_side) {
  auto file = MappedFile::open(path);  // refuses FIFOs and devices without blocking
  return decode(file->data(), file->size(), channels, max_side, path + ": ");
}

Image decode_image(const std::string& bytes, int channels, int max_side) {
  return decode(bytes.data(), bytes.size(), channels, max_side, "");
}

std::string encode_png(const Image& img, const std::map<std::string, std::string>& text) {
  DF_CHECK(img.width > 0 && img.height > 0 && (img.channels >= 1 && img.channels <= 4) &&
               img.pixels.size() == size_t(img.width) * size_t(img.height) * size_t(img.channels),
           "encode_png: inconsistent image ", img.width, "x", img.height, "x", img.channels);
  int len = 0;
  unsigned char* png = stbi_write_png_to_mem(img.pixels.data(), img.width * img.channels, img.width,
                                             img.height, img.channels, &len);
  DF_CHECK(png && len > 33, "encode_png: PNG encoding failed");
  std::string out(reinterpret_cast<char*>(png), size_t(len));
  STBIW_FREE(png);
  // Insert the text chunks right after IHDR (8-byte signature + 25-byte IHDR chunk).
  std::string chunks;
  for (auto& [key, value] : text) {
    DF_CHECK(!key.empty() && key.size() < 80 && key.find('\0') == std::string::npos,
             "encode_png: bad text keyword '", key, "'");
    if (is_ascii(value)) {
      chunks += chunk("tEXt", key + std::string(1, '\0') + value);
    } else {
      // keyword \0 compression-flag(0) method(0) language \0 translated-keyword \0 text
      chunks += chunk("iTXt", key + std::string("\0\0\0\0\0", 5) + value);
    }
  }
  out.insert(33, chunks);
  return out;
}

void save_png(const std::string& path, const Image& img, const std::map<std::string, std::string>& text) {
  std::string png = encode_png(img, text);
  AtomicWriter w(path);
  w.write(png.data(), png.size());
  w.commit();
}

std::map<std::string, std::string> read_png_text(const std::string& path) {
  auto file = MappedFile::open(path);
  const auto* p = reinterpret_cast<const uint8_t*>(file->data());
  const size_t n = file->size();
  static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  DF_CHECK(n >= 8 && std::memcmp(p, kSig, 8) == 0, path, ": not a PNG file");
  std::map<std::string, std::string> out;
  size_t off = 8;
  while (off + 12 <= n) {
    const uint32_t len = get_be32(p + off);
    DF_CHECK(len <= n - off - 12, path, ": truncated PNG chunk");
    std::string type(reinterpret_cast<const char*>(p + off + 4), 4);
    std::string data(reinterpret_cast<const char*>(p + off + 8), len);
    if (type == "tEXt" || type == "iTXt") {
      size_t z = data.find('\0');
      if (z != std::string::npos) {
        std::string key = data.substr(0, z), rest = data.substr(z + 1);
        if (type == "iTXt") {
          // skip compression flag, method, language \0, translated keyword \0
          size_t a = 2, b = rest.find('\0', a);
          size_t c = b == std::string::npos ? b : rest.find('\0', b + 1);
          rest = c == std::string::npos ? std::string() : rest.substr(c + 1);
        }
        out[key] = rest;
      }
    }
    if (type == "IEND") break;
    off += 12 + len;
  }
  return out;
}

}  // namespace diffuse::io
