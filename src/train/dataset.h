// Training data in the layouts users keep it in: a folder of images with captions, either in a
// same-name `.txt` beside each image or in a `metadata.jsonl` (one JSON object per line with
// `file_name` and `text` or `caption`, as Hugging Face's imagefolder). Images are resized
// (shorter side to the training size, antialiased) and center-cropped to a square. The order
// of the samples and each sample's random draws are pure functions of (seed, position), so a
// resumed or data-parallel run sees exactly what one uninterrupted process would.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/image.h"

namespace diffuse::train {

struct Sample {
  std::string image_path;
  std::string caption;
};

class ImageCaptionDataset {
 public:
  // Lists the images of `dir` (.png, .jpg, .jpeg, .bmp, .tga; sorted by name) and their
  // captions. Throws an Error for a missing or empty folder, an image without a caption (named)
  // and a bad metadata.jsonl line (numbered). Images are decoded when used.
  static ImageCaptionDataset open(const std::string& dir);

  int64_t size() const { return int64_t(samples_.size()); }
  const Sample& operator[](int64_t i) const { return samples_[size_t(i)]; }
  const std::string& dir() const { return dir_; }

  // Sample i's image as a [3, resolution, resolution] tensor in [-1, 1].
  Tensor image(int64_t i, int64_t resolution) const;

 private:
  std::string dir_;
  std::vector<Sample> samples_;
};

// RGBA is composited onto white, gray expanded; then the shorter side is resized to
// `resolution` (antialiased triangle filter, as PIL's bilinear) and the center square cut out.
io::Image resize_and_center_crop(const io::Image& img, int resolution);
// Loads one training image (errors name the file) as [3, R, R] in [-1, 1].
Tensor load_training_image(const std::string& path, int64_t resolution);

// The order of the samples in epoch `epoch`: a permutation of 0..n-1 drawn from (seed, epoch).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// Where the stream of samples is: samples are taken in the order of consecutive epochs'
// permutations, one global batch after another.
struct DataPosition {
  int64_t epoch = 0;  // of the sample
  int64_t index = 0;  // index into the dataset
};
// The sample at stream position `pos` (0-based count of samples drawn so far).
class SampleStream {
 public:
  SampleStream(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}
  DataPosition at(int64_t pos);

 private:
  int64_t n_;
  uint64_t seed_;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> perm_;
};

// A seed for the random draws (noise, timesteps) of one sample: a hash of the run's seed, the
// optimizer step and the sample's index within that step's global batches.
uint64_t sample_seed(uint64_t seed, int64_t step, int64_t sample);

}  // namespace diffuse::train
