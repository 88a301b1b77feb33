// `mpirun -np 2 diffuse train unet|clip ...` against one process with the same global batch:
// the same loss curve in the CSV log and the same trained weights; process 0 alone writes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "distributed_util.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "train_test_util.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

// Four 64x64 images (colour gradients) with captions.
std::string make_data() {
  const std::string dir = test::temp_dir() + "/data";
  fs::create_directories(dir);
  const char* words[] = {"red", "green", "blue", "gray"};
  for (int k = 0; k < 4; ++k) {
    io::Image img{64, 64, 3, std::vector<uint8_t>(64 * 64 * 3)};
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x)
        for (int c = 0; c < 3; ++c)
          img.pixels[size_t((y * 64 + x) * 3 + c)] = uint8_t((x * (c + 1) + y * k + 30 * k) % 256);
    const std::string name = dir + "/img" + std::to_string(k);
    io::save_png(name + ".png", img);
    std::ofstream(name + ".txt") << "a " << words[k] << " gradient";
  }
  return dir;
}

struct Row {
  double loss, lr, grad_norm;
};

std::vector<Row> read_log(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "step,epoch,loss,lr,grad_norm,seconds");
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    std::vector<double> v;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) v.push_back(std::stod(cell));
    EXPECT_EQ(v.size(), 6u) << line;
    EXPECT_EQ(v[0], double(rows.size() + 1)) << line;
    if (v.size() == 6) rows.push_back({v[2], v[3], v[4]});
  }
  return rows;
}

// The relative L2 difference of two weight files' tensors (the same names and shapes).
double relative_difference(const std::string& a, const std::string& b) {
  const io::TensorMap wa = io::load_safetensors(a), wb = io::load_safetensors(b);
  EXPECT_EQ(wa.size(), wb.size());
  double diff = 0, norm = 0;
  for (const auto& [name, t] : wa) {
    EXPECT_TRUE(wb.count(name)) << name;
    if (!wb.count(name)) return INFINITY;
    const auto x = t.to_float_vector(), y = wb.at(name).to_float_vector();
    EXPECT_EQ(x.size(), y.size()) << name;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      diff += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
      norm += double(x[i]) * x[i];
    }
  }
  return std::sqrt(diff / norm);
}

}  // namespace

TEST(DistributedCli, TwoProcessesTrainAsOne) {
  if (test::mpirun(2).empty()) GTEST_SKIP() << "built without MPI";
  DF_REQUIRE_REF(model, "sd1-tiny/diffusers");
  const std::string data = make_data();
  // At 128 px the tiny UNet's deepest level is 2x2 (at 64 px, 1x1: its group norms over two
  // values make the run chaotic, and a different split of the same batch alone changes the
  // gradient norm by 1e-3 within two steps). A small learning rate keeps AdamW's first steps on
  // gradients that are analytically zero (biases before one-channel group norms) small.
  const std::string args = " train unet -m " + model + " --data " + data +
                           " --resolution 128 --batch-size 2 --grad-accum 2 --steps 2"
                           " --lr 1e-4 --seed 5 --save-every 0 -q -o ";
  const std::string one = test::temp_dir() + "/one", two = test::temp_dir() + "/two";
  std::string out;
  ASSERT_EQ(test::run_command("OMP_NUM_THREADS=1 " + test::cli_path() + args + one + " 2>&1", &out),
            0)
      << out;
  ASSERT_EQ(test::run_command(test::mpirun(2) + test::cli_path() + args + two + " 2>&1", &out), 0)
      << out;
  EXPECT_NE(out.find("2 processes"), std::string::npos) << out;

  const std::vector<Row> a = read_log(one + "/log.csv"), b = read_log(two + "/log.csv");
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), a.size());  // one writer: no rows twice
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(b[i].loss, a[i].loss, 1e-5 * std::abs(a[i].loss)) << "step " << i + 1;
    EXPECT_EQ(b[i].lr, a[i].lr) << "step " << i + 1;
    EXPECT_NEAR(b[i].grad_norm, a[i].grad_norm, 1e-5 * a[i].grad_norm) << "step " << i + 1;
  }
  EXPECT_NE(a[0].loss, a[1].loss);

  const std::string rel = "/checkpoint-2/unet/diffusion_pytorch_model.safetensors";
  ASSERT_TRUE(fs::exists(one + rel)) << one + rel;
  ASSERT_TRUE(fs::exists(two + rel)) << two + rel;
  EXPECT_LE(relative_difference(one + rel, two + rel), 1e-5)
      << "relative L2 difference of the trained UNets";
}

// CLIP's contrastive loss does not split into per-sample parts: each process gathers the
// others' embeddings and computes the whole batch's loss, which makes two processes train as
// one.
TEST(DistributedCli, TwoProcessesTrainClipAsOne) {
  if (test::mpirun(2).empty()) GTEST_SKIP() << "built without MPI";
  const std::string args = " train clip --config " + test::tiny_clip_config(test::temp_dir()) +
                           " --data " + make_data() +
                           " --batch-size 4 --steps 3 --lr 1e-3 --seed 5 --save-every 0 -q -o ";
  const std::string one = test::temp_dir() + "/clip-one", two = test::temp_dir() + "/clip-two";
  std::string out;
  const int rc =
      test::run_command("OMP_NUM_THREADS=1 " + test::cli_path() + args + one + " 2>&1", &out);
  if (rc != 0 && out.find("fetch_data") != std::string::npos)
    GTEST_SKIP() << "no CLIP vocabulary: " << out;
  ASSERT_EQ(rc, 0) << out;
  ASSERT_EQ(test::run_command(test::mpirun(2) + test::cli_path() + args + two + " 2>&1", &out), 0)
      << out;
  const std::vector<Row> a = read_log(one + "/log.csv"), b = read_log(two + "/log.csv");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(b[i].loss, a[i].loss, 1e-5 * std::abs(a[i].loss)) << "step " << i + 1;
    EXPECT_NEAR(b[i].grad_norm, a[i].grad_norm, 1e-5 * a[i].grad_norm) << "step " << i + 1;
  }
  EXPECT_NE(a[0].loss, a[2].loss);
  const std::string rel = "/checkpoint-3/model.safetensors";
  EXPECT_LE(relative_difference(one + rel, two + rel), 1e-5)
      << "relative L2 difference of the trained CLIPs";
}
