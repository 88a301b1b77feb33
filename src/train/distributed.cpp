#include "train/distributed.h"

#include <algorithm>
#include <cstring>

#include "autograd/autograd.h"
#include "core/error.h"

namespace diffuse::train {

namespace {

// Gradients are packed into buffers of at most this many floats (64 MiB), one all-reduce each:
// a few large messages instead of one per parameter, without a copy of every gradient at once.
constexpr int64_t kBucketFloats = int64_t(1) << 24;

}  // namespace

void Communicator::average_gradients(const std::vector<Tensor*>& params) {
  if (size() == 1) return;
  std::vector<Tensor*> grads;
  for (Tensor* p : params) {
    const auto& m = p->autograd_meta();
    if (!m || !m->grad.defined()) continue;
    Tensor& g = m->grad;
    DF_CHECK(g.dtype() == DType::F32 && g.is_contiguous(),
             "average_gradients: gradients must be contiguous f32, got ", g.desc());
    grads.push_back(&g);
  }
  // Every process must reduce the same gradients, else the collectives below would not match.
  float count = float(grads.size());
  all_reduce_sum(&count, 1);
  DF_CHECK(count == float(grads.size()) * float(size()), "average_gradients: process ", rank(),
           " has ", grads.size(), " gradients, the processes together ", count, " (expected ",
           size(), " x ", grads.size(), ")");

  const float inv = 1.0f / float(size());
  std::vector<float> bucket;
  size_t i = 0;
  while (i < grads.size()) {
    // A gradient larger than a bucket is reduced in place; smaller ones are packed together.
    if (grads[i]->numel() >= kBucketFloats) {
      float* d = grads[i]->data<float>();
      all_reduce_sum(d, grads[i]->numel());
      for (int64_t k = 0; k < grads[i]->numel(); ++k) d[k] *= inv;
      ++i;
      continue;
    }
    size_t j = i;
    int64_t n = 0;
    while (j < grads.size() && grads[j]->numel() < kBucketFloats &&
           n + grads[j]->numel() <= kBucketFloats)
      n += grads[j++]->numel();
    bucket.resize(size_t(n));
    int64_t off = 0;
    for (size_t k = i; k < j; ++k) {
      std::memcpy(bucket.data() + off, grads[k]->data<float>(), size_t(grads[k]->numel()) * 4);
      off += grads[k]->numel();
    }
    all_reduce_sum(bucket.data(), n);
    off = 0;
    for (size_t k = i; k < j; ++k) {
      float* d = grads[k]->data<float>();
      for (int64_t e = 0; e < grads[k]->numel(); ++e) d[e] = bucket[size_t(off + e)] * inv;
      off += grads[k]->numel();
    }
    i = j;
  }
}

double Communicator::mean(double value) {
  if (size() == 1) return value;
  float v = float(value);
  all_reduce_sum(&v, 1);
  return double(v) / double(size());
}

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(float*, int64_t) override {}
  void broadcast(void*, int64_t, int) override {}
  void barrier() override {}
  const char* backend() const override { return "single"; }
};

}  // namespace

Communicator& single_process() {
  static SingleProcess w;
  return w;
}

// Built without MPI: a single process. (distributed_mpi.cpp replaces these when MPI is found.)
#ifndef DIFFUSE_HAVE_MPI
Communicator& world() {
  return single_process();
}
bool built_with_mpi() {
  return false;
}
#endif

BatchShare batch_share(int64_t global_batch, int rank, int size) {
  DF_CHECK(size >= 1 && rank >= 0 && rank < size, "bad process rank ", rank, " of ", size);
  DF_CHECK(global_batch >= 1, "the batch size must be at least 1, got ", global_batch);
  DF_CHECK(global_batch % size == 0, "the batch size ", global_batch,
           " does not split evenly over ", size, " processes; use a multiple of ", size);
  const int64_t per = global_batch / size;
  return {per * rank, per * (rank + 1)};
}

}  // namespace diffuse::train
