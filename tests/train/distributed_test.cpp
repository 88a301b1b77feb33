// Data-parallel training: the split of a batch over processes, the single-process world, and,
// when built with MPI, runs of distributed_check under mpirun (every collective; a failing
// process ends the run instead of hanging it; two processes train exactly as one process with
// the whole batch).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/autograd.h"
#include "autograd/functions.h"
#include "distributed_util.h"
#include "test_util.h"
#include "train/distributed.h"

using namespace diffuse;

TEST(BatchShare, SplitsEvenlyInOrder) {
  for (int size : {1, 2, 3, 4}) {
    int64_t next = 0;
    for (int r = 0; r < size; ++r) {
      const auto s = train::batch_share(12, r, size);
      EXPECT_EQ(s.begin, next);
      EXPECT_EQ(s.end - s.begin, 12 / size);
      next = s.end;
    }
    EXPECT_EQ(next, 12);
  }
  const auto one = train::batch_share(5, 0, 1);
  EXPECT_EQ(one.begin, 0);
  EXPECT_EQ(one.end, 5);
}

TEST(BatchShare, RejectsUnevenBatchesAndBadRanks) {
  try {
    train::batch_share(5, 0, 2);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not split evenly over 2 processes"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(train::batch_share(4, 2, 2), Error);
  EXPECT_THROW(train::batch_share(4, -1, 2), Error);
  EXPECT_THROW(train::batch_share(4, 0, 0), Error);
  EXPECT_THROW(train::batch_share(0, 0, 1), Error);
}

TEST(Communicator, PlainRunIsOneProcess) {
  // Not started by mpirun: no MPI, one process, whatever the build.
  train::Communicator& w = train::world();
  EXPECT_EQ(w.size(), 1);
  EXPECT_EQ(w.rank(), 0);
  EXPECT_STREQ(w.backend(), "single");
  EXPECT_EQ(&w, &train::single_process());
}

TEST(Communicator, SingleProcessIsTheIdentity) {
  train::Communicator& w = train::single_process();
  std::vector<float> v{1.5f, -2.f, 3.f};
  w.all_reduce_sum(v.data(), 3);
  EXPECT_EQ(v, (std::vector<float>{1.5f, -2.f, 3.f}));
  char text[] = "abc";
  w.broadcast(text, 4, 0);
  EXPECT_STREQ(text, "abc");
  w.barrier();
  EXPECT_EQ(w.mean(0.25), 0.25);
  Tensor p = Tensor::zeros({4});
  autograd::set_requires_grad(p, true);
  autograd::backward(autograd::sum(autograd::scale(p, 3.f)));
  w.average_gradients({&p});
  EXPECT_EQ(p.autograd_meta()->grad.to_float_vector(), std::vector<float>(4, 3.f));
}

#ifdef DIFFUSE_MPIEXEC

namespace {

std::string mpirun(int np, const std::string& args) {
  return test::mpirun(np) + DIFFUSE_DIST_CHECK + " " + args + " 2>&1";
}

std::vector<double> read_numbers(const std::string& path) {
  std::ifstream in(path);
  std::vector<double> v;
  double x;
  while (in >> x) v.push_back(x);
  return v;
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// Trains with `np` processes on a global batch of 4; the loss per step and the final weights.
void train_run(int np, std::vector<double>* loss, std::vector<float>* weights) {
  const std::string dir = test::temp_dir() + "/np" + std::to_string(np);
  std::filesystem::create_directories(dir);
  std::string out;
  const std::string cmd =
      np == 1 ? "OMP_NUM_THREADS=1 " + std::string(DIFFUSE_DIST_CHECK) + " train 4 " + dir + " 2>&1"
              : mpirun(np, "train 4 " + dir);
  ASSERT_EQ(test::run_command(cmd, &out), 0) << cmd << "\n" << out;
  for (int r = 0; r < np; ++r)
    EXPECT_NE(out.find("ok " + std::to_string(r) + " of " + std::to_string(np)), std::string::npos)
        << out;
  *loss = read_numbers(dir + "/loss.txt");
  *weights = read_floats(dir + "/weights.f32");
}

}  // namespace

TEST(Mpi, CollectivesOverThreeProcesses) {
  std::string out;
  ASSERT_EQ(test::run_command(mpirun(3, "collectives"), &out), 0) << out;
  for (int r = 0; r < 3; ++r)
    EXPECT_NE(out.find("ok " + std::to_string(r) + " of 3"), std::string::npos) << out;
}

TEST(Mpi, AFailingProcessEndsTheRun) {
  std::string out;
  const int rc = test::run_command(mpirun(2, "fail"), &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(rc, 124) << "the run hung:\n" << out;  // timeout's status
  EXPECT_NE(out.find("process 1 fails on purpose"), std::string::npos) << out;
  EXPECT_EQ(out.find("ok 0 of 2"), std::string::npos) << out;
}

TEST(Mpi, UnevenBatchIsAnError) {
  std::string out;
  const int rc = test::run_command(mpirun(3, "train 4 " + test::temp_dir()), &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(rc, 124) << "the run hung:\n" << out;
  EXPECT_NE(out.find("does not split evenly over 3 processes"), std::string::npos) << out;
}

TEST(Mpi, TwoProcessesTrainAsOneWithTheWholeBatch) {
  std::vector<double> loss1, loss2;
  std::vector<float> w1, w2;
  train_run(1, &loss1, &w1);
  train_run(2, &loss2, &w2);
  ASSERT_EQ(loss1.size(), 5u);
  ASSERT_EQ(loss2.size(), loss1.size());
  for (size_t i = 0; i < loss1.size(); ++i)
    EXPECT_NEAR(loss2[i], loss1[i], 1e-5 * std::abs(loss1[i])) << "step " << i + 1;
  EXPECT_NE(loss1.front(), loss1.back());  // it trained
  ASSERT_EQ(w1.size(), w2.size());
  ASSERT_GT(w1.size(), 1000u);
  double diff = 0, norm = 0, max_diff = 0, max_w = 0;
  for (size_t i = 0; i < w1.size(); ++i) {
    const double d = double(w2[i]) - double(w1[i]);
    diff += d * d;
    norm += double(w1[i]) * double(w1[i]);
    max_diff = std::max(max_diff, std::abs(d));
    max_w = std::max(max_w, std::abs(double(w1[i])));
  }
  // Summing the batch in two halves rounds differently (about 1e-7 here); AdamW's normalized
  // update lets a few near-zero gradients move their weights by a little more (3e-6 of the
  // largest weight here). Without the gradient average both are about 3e-2.
  EXPECT_LE(std::sqrt(diff / norm), 1e-5) << "relative L2 difference of the final weights";
  EXPECT_LE(max_diff / max_w, 1e-4) << "largest difference " << max_diff;
}

#else

TEST(Mpi, NotBuilt) {
  GTEST_SKIP() << "built without MPI: data-parallel runs are not tested";
}

#endif
