// Images on disk: PNG/JPEG/BMP in (stb), PNG out with text chunks (A1111's "parameters").
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace diffuse::io {

struct Image {
  int width = 0, height = 0, channels = 0;  // channels: 1 (gray), 3 (RGB) or 4 (RGBA)
  std::vector<uint8_t> pixels;              // row-major, interleaved
};

// Reads PNG, JPEG, BMP, TGA...; `channels` 0 keeps the file's, else converts (1, 3 or 4).
// Errors name the file and what is wrong with it. max_side > 0 refuses, from the header and
// before any pixel is allocated, an image wider or taller than that. A path that is not a
// regular file (a FIFO, a device) is refused without blocking.
Image load_image(const std::string& path, int channels = 0, int max_side = 0);

// Decodes image bytes held in memory (PNG, JPEG, BMP...; e.g. a base64 upload), as load_image.
// max_side > 0 refuses, before decoding, an image wider or taller than that.
Image decode_image(const std::string& bytes, int channels = 0, int max_side = 0);

// Writes a PNG atomically with the given text chunks (tEXt, or iTXt for non-ASCII text).
void save_png(const std::string& path, const Image& img,
              const std::map<std::string, std::string>& text = {});

// Encodes to PNG bytes in memory (for the server), with text chunks.
std::string encode_png(const Image& img, const std::map<std::string, std::string>& text = {});

// Reads the tEXt/iTXt chunks of a PNG file (keyword -> text).
std::map<std::string, std::string> read_png_text(const std::string& path);

}  // namespace diffuse::io
