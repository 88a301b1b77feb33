// A program that distributed_test.cpp starts under mpirun (and alone) to check data-parallel
// training end to end:
//   distributed_check collectives       every collective of world() against known sums
//   distributed_check fail              process 1 fails while the others wait in a collective
//                                       (the run must end with an error, not hang)
//   distributed_check train BATCH DIR   a few AdamW steps of a small random UNet on a global
//                                       batch of BATCH, each process taking its share; process 0
//                                       writes DIR/loss.txt (one loss per step) and
//                                       DIR/weights.f32 (every final weight, raw)
// Prints one line per process ("ok RANK of SIZE") and exits 0 when its checks pass.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "autograd/autograd.h"
#include "autograd/functions.h"
#include "core/error.h"
#include "models/unet/unet_2d_condition.h"
#include "sampling/rng.h"
#include "train/diffusion.h"
#include "train/distributed.h"
#include "train/optim.h"
#include "train_test_util.h"

using namespace diffuse;

namespace {

void expect(bool ok, const std::string& what) {
  DF_CHECK(ok, "check failed: ", what);
}

int collectives(train::Communicator& w) {
  const int r = w.rank(), s = w.size();
  expect(s == 1 || std::string(w.backend()) == "mpi", "backend of a multi-process world");
  // all_reduce_sum: element i of process r is (r + 1) * i, the sum s (s + 1) / 2 * i.
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float((r + 1) * int(i));
  w.all_reduce_sum(v.data(), int64_t(v.size()));
  for (size_t i = 0; i < v.size(); ++i)
    expect(v[i] == float(s * (s + 1) / 2 * int(i)), "all_reduce_sum element " + std::to_string(i));
  w.all_reduce_sum(nullptr, 0);
  // broadcast from the last process.
  char text[32] = {};
  if (r == s - 1) std::snprintf(text, sizeof text, "from %d", r);
  w.broadcast(text, sizeof text, s - 1);
  expect(std::string(text) == "from " + std::to_string(s - 1), "broadcast");
  w.barrier();
  expect(w.mean(double(r)) == double(s - 1) / 2, "mean");
  // average_gradients: a gradient of r + 1 everywhere averages to (s + 1) / 2.
  Tensor p = Tensor::zeros({3, 5});
  autograd::set_requires_grad(p, true);
  autograd::backward(autograd::sum(autograd::scale(p, float(r + 1))));
  Tensor q = Tensor::zeros({2});  // no gradient: skipped
  w.average_gradients({&p, &q});
  for (float g : p.autograd_meta()->grad.to_float_vector())
    expect(g == float(s + 1) / 2, "average_gradients");
  // A bad root is an error, not a crash.
  bool threw = false;
  try {
    w.broadcast(text, 1, s);
  } catch (const Error&) {
    threw = true;
  }
  expect(threw, "broadcast from a root out of range throws");
  return 0;
}

int fail(train::Communicator& w) {
  if (w.rank() == 1) DF_FAIL("process 1 fails on purpose");
  float x = 1;
  w.all_reduce_sum(&x, 1);  // waits for process 1, which never comes
  return 0;
}

// The seed of one sample's draws: a function of (run seed, step, global sample index) only, so
// the draws do not depend on how the batch is split.
uint64_t sample_seed(uint64_t seed, int64_t step, int64_t index) {
  uint64_t h = seed ^ 0x9e3779b97f4a7c15ull;
  for (uint64_t v : {uint64_t(step), uint64_t(index)}) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  return h;
}

int train_run(train::Communicator& w, int64_t global_batch, const std::string& dir) {
  constexpr int kSteps = 5, kC = 4, kHW = 8, kS = 5, kD = 8;
  const train::BatchShare share = train::batch_share(global_batch, w.rank(), w.size());
  const int64_t b = share.end - share.begin;
  models::UNet2DConditionModel unet(test::small_unet_config());
  test::randomize_parameters(unet, 1);
  auto params = train::make_trainable(unet);
  const std::vector<Tensor*> slots = train::slots(params);
  train::AdamW opt(slots, {.lr = 3e-3f});
  const auto schedule = train::NoiseSchedule::stable_diffusion();
  // The dataset: global_batch fixed samples, the same on every process.
  const int64_t xn = kC * kHW * kHW, cn = kS * kD;
  const std::vector<float> x_all = test::seeded_normal(global_batch * xn, 100, 1.f);
  const std::vector<float> c_all = test::seeded_normal(global_batch * cn, 101, 1.f);

  std::ofstream loss_log;
  if (w.rank() == 0) loss_log.open(dir + "/loss.txt");
  for (int64_t step = 0; step < kSteps; ++step) {
    std::vector<float> noise(size_t(b * xn));
    std::vector<int64_t> t;
    for (int64_t i = 0; i < b; ++i) {
      sampling::TorchCpuGenerator g(sample_seed(7, step, share.begin + i));
      g.randn_fill(noise.data() + i * xn, xn);
      t.push_back(int64_t(g.next_u32() % uint32_t(schedule.num_train_timesteps())));
    }
    const Tensor x0 = Tensor::from_vector(
        {x_all.begin() + share.begin * xn, x_all.begin() + share.end * xn}, {b, kC, kHW, kHW});
    const Tensor ctx = Tensor::from_vector(
        {c_all.begin() + share.begin * cn, c_all.begin() + share.end * cn}, {b, kS, kD});
    const Tensor eps = Tensor::from_vector(noise, {b, kC, kHW, kHW});
    const Tensor noisy = train::add_noise(schedule, x0, eps, t);
    const Tensor pred = unet.forward(noisy, std::vector<float>(t.begin(), t.end()), ctx);
    const auto weights =
        train::min_snr_weights(schedule, t, 5.f, sampling::PredictionType::Epsilon);
    const Tensor loss = train::diffusion_loss(pred, eps, weights);
    autograd::backward(loss);
    w.average_gradients(slots);
    train::clip_grad_norm(slots, 1.0);
    opt.step();
    opt.zero_grad();
    const double mean_loss = w.mean(loss.item());
    if (w.rank() == 0) {
      char line[64];
      std::snprintf(line, sizeof line, "%.9g\n", mean_loss);
      loss_log << line;
    }
  }
  if (w.rank() == 0) {
    std::ofstream out(dir + "/weights.f32", std::ios::binary);
    for (Tensor* p : slots)
      out.write(reinterpret_cast<const char*>(p->data<float>()), std::streamsize(p->nbytes()));
    DF_CHECK(out.good() && loss_log.good(), "cannot write into ", dir);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    train::Communicator& w = train::world();
    int rc = 2;
    if (mode == "collectives") rc = collectives(w);
    if (mode == "fail") rc = fail(w);
    if (mode == "train" && argc == 4) rc = train_run(w, std::stoll(argv[2]), argv[3]);
    if (rc == 2) {
      std::fprintf(stderr, "usage: distributed_check collectives | fail | train BATCH DIR\n");
      return 2;
    }
    std::printf("ok %d of %d\n", w.rank(), w.size());
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
