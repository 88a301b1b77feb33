// The training loop without a model: which samples and seeds each micro-batch gets (epochs,
// accumulation, process shares), the log, checkpoints (every N steps, kept, atomic) and an
// exact resume.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "autograd/functions.h"
#include "io/safetensors.h"
#include "sampling/rng.h"
#include "test_util.h"
#include "train/run.h"

using namespace diffuse;
namespace fs = std::filesystem;

namespace {

class Vector : public nn::Module {
 public:
  Vector() {
    register_parameter("w", w, {4});
    w = Tensor::zeros({4});
  }
  Tensor w;
};

// Learns the mean of per-sample targets drawn from each sample's seed; records every batch.
class FakeTask : public train::TrainTask {
 public:
  explicit FakeTask(train::Communicator* comm, int64_t accumulation = 1) {
    params_ = train::make_trainable(model_);
    train::OptimizationOptions o;
    o.adamw.lr = 0.1f;
    o.grad_accumulation = accumulation;
    o.comm = comm;
    optim_ = std::make_unique<train::Optimization>(train::slots(params_), o);
  }
  train::TrainStepResult micro_batch(const train::MicroBatch& b) override {
    batches.push_back(b);
    std::vector<float> t(4, 0.f);
    for (size_t i = 0; i < b.indices.size(); ++i) {
      sampling::TorchCpuGenerator g(b.seeds[i]);
      const Tensor r = g.randn({4});
      for (int k = 0; k < 4; ++k)
        t[size_t(k)] += (r.data<float>()[k] + float(b.indices[i])) / float(b.indices.size());
    }
    return optim_->backward_and_step(autograd::mse_loss(model_.w, Tensor::from_vector(t, {4})));
  }
  train::Optimization& optimization() override { return *optim_; }
  const std::vector<nn::Module::ParamRef>& params() const override { return params_; }
  void save_model(const std::string& dir) override {
    io::save_safetensors(dir + "/w.safetensors", {{"w", model_.w}});
  }

  std::vector<train::MicroBatch> batches;

 private:
  Vector model_;
  std::vector<nn::Module::ParamRef> params_;
  std::unique_ptr<train::Optimization> optim_;
};

// A process `rank` of `size` whose collectives do nothing (to see what each process is given).
class FakeRank : public train::Communicator {
 public:
  FakeRank(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(float*, int64_t) override {}
  void broadcast(void*, int64_t, int) override {}
  void barrier() override {}
  const char* backend() const override { return "fake"; }

 private:
  int rank_, size_;
};

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l.substr(0, l.rfind(',')));
  return out;
}

train::RunOptions options(const std::string& out) {
  train::RunOptions o;
  o.output = out;
  o.batch_size = 2;
  o.steps = 6;
  o.seed = 5;
  o.save_every = 2;
  o.progress = false;
  o.settings = "{}";
  return o;
}

}  // namespace

TEST(TrainRun, EpochsCoverEverySampleOnceAndSeedsAreDistinct) {
  const std::string out = test::temp_dir() + "/run-epochs";
  FakeRank one(0, 1);
  FakeTask task(&one);
  train::RunOptions o = options(out);
  o.steps = 0;
  o.epochs = 2;
  EXPECT_EQ(train::total_steps(o, 5), 5);  // 10 samples in batches of 2
  train::run_training(task, 5, o, one);
  ASSERT_EQ(task.batches.size(), 5u);
  std::multiset<int64_t> first, second;
  std::set<uint64_t> seeds;
  for (size_t i = 0; i < 5; ++i)
    for (size_t j = 0; j < 2; ++j) {
      (i * 2 + j < 5 ? first : second).insert(task.batches[i].indices[j]);
      seeds.insert(task.batches[i].seeds[j]);
    }
  EXPECT_EQ(first, (std::multiset<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(second, (std::multiset<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(seeds.size(), 10u);
  const auto log = read_lines(out + "/log.csv");
  ASSERT_EQ(log.size(), 6u);
  EXPECT_EQ(log[0], "step,epoch,loss,lr,grad_norm");
  EXPECT_EQ(log[5].substr(0, 4), "5,1,");  // step 5 ends in epoch 1
}

TEST(TrainRun, ProcessesShareEachBatchWithTheSameSamplesAndSeeds) {
  FakeRank whole(0, 1), r0(0, 2), r1(1, 2);
  // (the fake processes average no gradients: only what each is given is compared)
  FakeTask all(nullptr, 2), p0(nullptr, 2), p1(nullptr, 2);
  train::RunOptions o = options(test::temp_dir() + "/run-whole");
  o.batch_size = 4;
  o.grad_accumulation = 2;
  o.steps = 3;
  train::run_training(all, 7, o, whole);
  o.output = test::temp_dir() + "/run-r0";
  train::run_training(p0, 7, o, r0);
  o.output = test::temp_dir() + "/run-r1";
  train::run_training(p1, 7, o, r1);
  ASSERT_EQ(all.batches.size(), 6u);  // 3 steps x 2 micro-batches
  ASSERT_EQ(p0.batches.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    const auto& w = all.batches[i];
    ASSERT_EQ(p0.batches[i].indices.size(), 2u);
    for (size_t j = 0; j < 2; ++j) {
      EXPECT_EQ(p0.batches[i].indices[j], w.indices[j]);
      EXPECT_EQ(p0.batches[i].seeds[j], w.seeds[j]);
      EXPECT_EQ(p1.batches[i].indices[j], w.indices[j + 2]);
      EXPECT_EQ(p1.batches[i].seeds[j], w.seeds[j + 2]);
    }
  }
  EXPECT_TRUE(fs::exists(test::temp_dir() + "/run-r0/log.csv"));  // only rank 0 writes
  EXPECT_FALSE(fs::exists(test::temp_dir() + "/run-r1/log.csv"));
  EXPECT_FALSE(fs::exists(test::temp_dir() + "/run-r1/checkpoint-3"));
}

TEST(TrainRun, ResumeFromACheckpointContinuesExactly) {
  FakeRank one(0, 1);
  const std::string a = test::temp_dir() + "/run-a", b = test::temp_dir() + "/run-b";
  FakeTask whole(&one);
  const train::RunResult ra = train::run_training(whole, 3, options(a), one);
  EXPECT_EQ(ra.steps, 6);
  EXPECT_EQ(ra.last_checkpoint, a + "/checkpoint-6");
  // keep = 2: checkpoint-2 was removed; `last` names the newest.
  EXPECT_FALSE(fs::exists(a + "/checkpoint-2"));
  EXPECT_TRUE(fs::exists(a + "/checkpoint-4/training_state.safetensors"));
  EXPECT_EQ(train::latest_checkpoint(a), a + "/checkpoint-6");

  // Four steps, then a "crash": the log has a row past the checkpoint, and a half-written
  // checkpoint folder lies around.
  {
    FakeTask part(&one);
    train::RunOptions o = options(b);
    o.steps = 5;
    o.save_every = 4;
    train::run_training(part, 3, o, one);
    fs::remove_all(b + "/checkpoint-5");
    fs::create_directories(b + "/.checkpoint-6.tmp");
  }
  FakeTask resumed(&one);
  train::RunOptions o = options(b);
  o.resume = true;
  const train::RunResult rb = train::run_training(resumed, 3, o, one);
  EXPECT_EQ(rb.start_step, 4);
  EXPECT_EQ(resumed.batches.size(), 2u);
  EXPECT_EQ(resumed.batches[0].seeds, whole.batches[4].seeds);
  EXPECT_EQ(resumed.batches[0].indices, whole.batches[4].indices);
  EXPECT_EQ(read_lines(a + "/log.csv"), read_lines(b + "/log.csv"));
  EXPECT_FALSE(fs::exists(b + "/.checkpoint-6.tmp"));
  const auto wa = io::load_safetensors(a + "/checkpoint-6/w.safetensors"),
             wb = io::load_safetensors(b + "/checkpoint-6/w.safetensors");
  EXPECT_EQ(test::rel_error(wa.at("w"), wb.at("w")), 0.0);

  // Other settings are refused.
  FakeTask other(&one);
  o.settings = "{\"lr\": 1}";
  EXPECT_THROW(train::run_training(other, 3, o, one), Error);
}
