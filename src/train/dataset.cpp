#include "train/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/json_file.h"
#include "io/mmap_file.h"

namespace diffuse::train {

namespace fs = std::filesystem;

namespace {

bool is_image_name(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".tga";
}

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws));
  const size_t e = s.find_last_not_of(ws);
  s.erase(e == std::string::npos ? 0 : e + 1);
  return s;
}

// metadata.jsonl: file name (relative to the folder) -> caption.
std::map<std::string, std::string> read_metadata(const fs::path& path) {
  std::map<std::string, std::string> out;
  std::istringstream in(io::read_text_file(path.string()));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (trim(line).empty()) continue;
    const nlohmann::json j = parse_json(line, str(path.string(), " line ", n));
    DF_CHECK(j.is_object() && j.contains("file_name") && j["file_name"].is_string(), path.string(),
             " line ", n, ": expected an object with a string \"file_name\"");
    const char* key = j.contains("text") ? "text" : "caption";
    DF_CHECK(j.contains(key) && j[key].is_string(), path.string(), " line ", n,
             ": expected a string \"text\" (or \"caption\") beside \"file_name\"");
    out[fs::path(j["file_name"].get<std::string>()).lexically_normal().string()] =
        j[key].get<std::string>();
  }
  return out;
}

// Weights of a triangle filter resampling `in` samples to `out` (PIL's bilinear with antialias:
// the filter widens by the downscale factor). For each output: first input and its weights.
struct Taps {
  std::vector<int> first;
  std::vector<std::vector<float>> w;
};

Taps triangle_taps(int in, int out, double offset, double scale) {
  Taps t;
  const double support = std::max(1.0, scale);
  for (int o = 0; o < out; ++o) {
    const double center = (o + 0.5) * scale + offset;
    const int lo = std::max(0, int(std::floor(center - support)));
    const int hi = std::min(in, int(std::ceil(center + support)));
    std::vector<float> w;
    double sum = 0;
    for (int i = lo; i < hi; ++i) {
      const double x = std::abs((i + 0.5 - center) / support);
      const double v = x < 1 ? 1 - x : 0;
      w.push_back(float(v));
      sum += v;
    }
    for (float& v : w) v = sum > 0 ? float(v / sum) : 0.f;
    t.first.push_back(lo);
    t.w.push_back(std::move(w));
  }
  return t;
}

}  // namespace

ImageCaptionDataset ImageCaptionDataset::open(const std::string& dir) {
  DF_CHECK(fs::is_directory(dir), "training data: ", dir, " is not a folder");
  ImageCaptionDataset d;
  d.dir_ = dir;
  const fs::path meta = fs::path(dir) / "metadata.jsonl";
  if (fs::exists(meta)) {
    for (auto& [name, caption] : read_metadata(meta)) {
      const fs::path p = fs::path(dir) / name;
      DF_CHECK(fs::is_regular_file(p), meta.string(), " names ", name, ", which is not in ", dir);
      d.samples_.push_back({p.string(), caption});
    }
  } else {
    std::vector<fs::path> images;
    for (auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && is_image_name(e.path())) images.push_back(e.path());
    std::sort(images.begin(), images.end());
    for (const fs::path& p : images) {
      fs::path txt = p;
      txt.replace_extension(".txt");
      DF_CHECK(fs::is_regular_file(txt), "training data: the image ", p.filename().string(),
               " has no caption (expected ", txt.filename().string(), " beside it, or a ",
               "metadata.jsonl in ", dir, ")");
      d.samples_.push_back({p.string(), trim(io::read_text_file(txt.string()))});
    }
  }
  DF_CHECK(!d.samples_.empty(), "training data: no images (.png, .jpg, .jpeg, .bmp, .tga) in ",
           dir);
  return d;
}

Tensor ImageCaptionDataset::image(int64_t i, int64_t resolution) const {
  DF_CHECK(i >= 0 && i < size(), "dataset index ", i, " out of range 0..", size() - 1);
  return load_training_image(samples_[size_t(i)].image_path, resolution);
}

io::Image resize_and_center_crop(const io::Image& src, int res) {
  DF_CHECK(res > 0, "resize: bad resolution ", res);
  DF_CHECK(src.width > 0 && src.height > 0, "resize: empty image");
  // To RGB floats, alpha over white.
  const int w = src.width, h = src.height, c = src.channels;
  std::vector<float> rgb(size_t(w) * h * 3);
  for (int64_t i = 0; i < int64_t(w) * h; ++i) {
    const uint8_t* p = &src.pixels[size_t(i * c)];
    const float a = c == 4 || c == 2 ? p[c - 1] / 255.f : 1.f;
    for (int k = 0; k < 3; ++k) {
      const float v = c >= 3 ? p[k] : p[0];
      rgb[size_t(i * 3 + k)] = v * a + 255.f * (1 - a);
    }
  }
  // Shorter side to res; the crop is the center res x res of the scaled image.
  const double s = double(std::min(w, h)) / res;  // input pixels per output pixel
  const double off_x = (w / s - res) / 2 * s, off_y = (h / s - res) / 2 * s;
  const Taps tx = triangle_taps(w, res, off_x, s), ty = triangle_taps(h, res, off_y, s);
  std::vector<float> rows(size_t(res) * h * 3);  // horizontal pass: h x res
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < res; ++x)
      for (int k = 0; k < 3; ++k) {
        float acc = 0;
        for (size_t j = 0; j < tx.w[size_t(x)].size(); ++j)
          acc += tx.w[size_t(x)][j] *
                 rgb[(size_t(y) * w + size_t(tx.first[size_t(x)]) + j) * 3 + size_t(k)];
        rows[(size_t(y) * res + size_t(x)) * 3 + size_t(k)] = acc;
      }
  io::Image out;
  out.width = out.height = res;
  out.channels = 3;
  out.pixels.resize(size_t(res) * res * 3);
  for (int y = 0; y < res; ++y)
    for (int x = 0; x < res; ++x)
      for (int k = 0; k < 3; ++k) {
        float acc = 0;
        for (size_t j = 0; j < ty.w[size_t(y)].size(); ++j)
          acc += ty.w[size_t(y)][j] *
                 rows[((size_t(ty.first[size_t(y)]) + j) * res + size_t(x)) * 3 + size_t(k)];
        out.pixels[(size_t(y) * res + size_t(x)) * 3 + size_t(k)] =
            uint8_t(std::clamp(std::lround(acc), 0L, 255L));
      }
  return out;
}

Tensor load_training_image(const std::string& path, int64_t resolution) {
  const io::Image img = resize_and_center_crop(io::load_image(path), int(resolution));
  const int64_t r = resolution;
  std::vector<float> v(size_t(3 * r * r));
  // h w c -> c h w, [0, 255] -> [-1, 1]
  for (int64_t y = 0; y < r; ++y)
    for (int64_t x = 0; x < r; ++x)
      for (int64_t k = 0; k < 3; ++k)
        v[size_t((k * r + y) * r + x)] = img.pixels[size_t((y * r + x) * 3 + k)] / 127.5f - 1.f;
  return Tensor::from_vector(v, {3, r, r});
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  std::mt19937_64 rng(splitmix64(seed ^ splitmix64(uint64_t(epoch) + 0x5EEDull)));
  // Fisher-Yates with an exact bounded draw (rejection), so every platform gives the same order.
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t bound = uint64_t(i) + 1, limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = rng();
    while (r >= limit);
    std::swap(p[size_t(i)], p[size_t(r % bound)]);
  }
  return p;
}

DataPosition SampleStream::at(int64_t pos) {
  DF_CHECK(n_ > 0 && pos >= 0, "sample stream: bad position ", pos, " of ", n_, " samples");
  const int64_t epoch = pos / n_;
  if (epoch != cached_epoch_) {
    perm_ = epoch_permutation(n_, seed_, epoch);
    cached_epoch_ = epoch;
  }
  return {epoch, perm_[size_t(pos % n_)]};
}

uint64_t sample_seed(uint64_t seed, int64_t step, int64_t sample) {
  return splitmix64(splitmix64(splitmix64(seed) ^ uint64_t(step)) ^ uint64_t(sample));
}

}  // namespace diffuse::train
