#include "apps/server/jobs.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "apps/server/api_error.h"
#include "core/error.h"
#include "core/parallel.h"
#include "io/image.h"
#include "pipeline/parameters.h"

namespace diffuse::server {

namespace {

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string new_job_id() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lk(mu);
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

}  // namespace

const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::Queued:
      return "queued";
    case JobState::Running:
      return "running";
    case JobState::Done:
      return "done";
    case JobState::Cancelled:
      return "cancelled";
    case JobState::Failed:
      return "failed";
  }
  return "unknown";
}

struct JobQueue::Job {
  std::string id;
  std::shared_ptr<const JobSpec> spec;
  std::atomic<bool> cancel{false};
  // Guarded by JobQueue::mu_.
  JobState state = JobState::Queued;
  int64_t step = 0, steps = 0;
  double created = 0, started = 0, finished = 0;
  double sampling_start = 0;  // steady clock, once the model is ready
  double step_seconds = 0;    // measured per step
  int error_status = 0;
  std::string error, detail;
  std::vector<JobImage> images;
  int64_t clip_skip = 0;
  size_t bytes = 0;  // kept once finished: images and parameters
};

JobQueue::JobQueue(ModelLoader loader, size_t max_queued, size_t keep_finished, int threads,
                   size_t max_finished_bytes)
    : loader_(std::move(loader)),
      max_queued_(max_queued),
      keep_finished_(keep_finished),
      max_finished_bytes_(max_finished_bytes),
      threads_(threads) {
  worker_ = std::thread([this] { worker_loop(); });
}

JobQueue::~JobQueue() {
  shutdown();
}

void JobQueue::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
    for (auto& j : queue_) {
      j->state = JobState::Cancelled;
      j->finished = now_seconds();
      j->error = "cancelled";
      j->detail = "the server is shutting down";
      retire(j);
      ++stats_.cancelled;
    }
    queue_.clear();
    if (running_) running_->cancel = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

std::string JobQueue::submit(JobSpec spec) {
  auto job = std::make_shared<Job>();
  job->id = new_job_id();
  job->spec = std::make_shared<const JobSpec>(std::move(spec));
  job->created = now_seconds();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) throw ApiError(503, "shutting down", "the server is stopping");
    if (queue_.size() >= max_queued_) {
      ++stats_.refused;
      throw ApiError(503, "queue full",
                     std::to_string(queue_.size()) + " jobs are waiting; try again later");
    }
    if (running_ || !queue_.empty()) ++stats_.waited;
    queue_.push_back(job);
    by_id_[job->id] = job;
    ++stats_.submitted;
    stats_.max_depth =
        std::max<int64_t>(stats_.max_depth, int64_t(queue_.size()) - (running_ ? 0 : 1));
  }
  work_cv_.notify_one();
  return job->id;
}

// A finished job keeps what the job API reports: its parameters, state and images, not the
// request's image tensors. The oldest finished jobs are forgotten beyond keep_finished jobs or
// max_finished_bytes of images (the newest is always kept).
void JobQueue::retire(const std::shared_ptr<Job>& job) {
  if (job->spec->req.init_image.defined() || job->spec->req.mask.defined() ||
      job->spec->req.init_latents.defined() || job->spec->req.init_image_latents.defined()) {
    auto slim = std::make_shared<JobSpec>(*job->spec);
    slim->req.init_image = Tensor();
    slim->req.mask = Tensor();
    slim->req.init_latents = Tensor();
    slim->req.init_image_latents = Tensor();
    job->spec = std::move(slim);
  }
  job->bytes = job->spec->parameters.dump().size();
  for (const auto& im : job->images) job->bytes += im.png.size() + im.infotext.size();
  finished_bytes_ += job->bytes;
  finished_.push_back(job);
  while (finished_.size() > 1 &&
         (finished_.size() > keep_finished_ || finished_bytes_ > max_finished_bytes_)) {
    finished_bytes_ -= finished_.front()->bytes;
    by_id_.erase(finished_.front()->id);
    finished_.pop_front();
  }
}

JobInfo JobQueue::snapshot(const Job& j, bool with_images) const {
  JobInfo s;
  s.id = j.id;
  s.spec = j.spec;
  s.state = j.state;
  s.step = j.step;
  s.steps = j.steps;
  s.created = j.created;
  s.started = j.started;
  s.finished = j.finished;
  s.error_status = j.error_status;
  s.error = j.error;
  s.detail = j.detail;
  s.clip_skip = j.clip_skip;
  if (j.state == JobState::Queued) {
    for (size_t i = 0; i < queue_.size(); ++i)
      if (queue_[i].get() == &j) s.queue_position = int(i);
  }
  if (j.state == JobState::Done) {
    s.progress = 1.0;
  } else if (j.steps > 0) {
    s.progress = std::min(1.0, double(j.step) / double(j.steps));
  }
  if (j.state == JobState::Running) {
    const double per_step = j.step_seconds > 0 ? j.step_seconds : last_step_seconds_;
    s.eta_seconds = per_step * double(std::max<int64_t>(0, j.steps - j.step));
  }
  if (with_images) s.images = j.images;
  return s;
}

std::optional<JobInfo> JobQueue::info(const std::string& id, bool with_images) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return snapshot(*it->second, with_images);
}

std::optional<JobInfo> JobQueue::wait(const std::string& id) {
  std::unique_lock<std::mutex> lk(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  std::shared_ptr<Job> job = it->second;
  done_cv_.wait(lk, [&] { return is_finished(job->state); });
  return snapshot(*job, true);
}

std::optional<JobInfo> JobQueue::wait_for(const std::string& id, double seconds) {
  std::unique_lock<std::mutex> lk(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  std::shared_ptr<Job> job = it->second;
  done_cv_.wait_for(lk, std::chrono::duration<double>(seconds),
                    [&] { return is_finished(job->state); });
  return snapshot(*job, is_finished(job->state));
}

bool JobQueue::cancel(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  auto job = it->second;
  job->cancel = true;
  if (job->state == JobState::Queued) {
    queue_.erase(std::remove(queue_.begin(), queue_.end(), job), queue_.end());
    job->state = JobState::Cancelled;
    job->finished = now_seconds();
    job->error = "cancelled";
    job->detail = "cancelled before it started";
    retire(job);
    ++stats_.cancelled;
    done_cv_.notify_all();
  }
  return true;
}

bool JobQueue::interrupt() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!running_) return false;
  running_->cancel = true;
  return true;
}

std::optional<JobInfo> JobQueue::current() const {
  std::lock_guard<std::mutex> lk(mu_);
  if (!running_) return std::nullopt;
  return snapshot(*running_, false);
}

std::vector<JobInfo> JobQueue::list() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<JobInfo> out;
  if (running_) out.push_back(snapshot(*running_, false));
  for (auto& j : queue_) out.push_back(snapshot(*j, false));
  for (auto it = finished_.rbegin(); it != finished_.rend(); ++it)
    out.push_back(snapshot(**it, false));
  return out;
}

size_t JobQueue::queued() const {
  std::lock_guard<std::mutex> lk(mu_);
  return queue_.size();
}

QueueStats JobQueue::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

std::string JobQueue::resident_model() const {
  std::lock_guard<std::mutex> lk(mu_);
  return resident_name_;
}

void JobQueue::worker_loop() {
  // OpenMP's thread count is per thread: set it where the generations run.
  if (threads_ > 0) set_num_threads(threads_);
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      work_cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      job->state = JobState::Running;
      job->started = now_seconds();
      running_ = job;
    }
    execute(*job);
    {
      std::lock_guard<std::mutex> lk(mu_);
      running_.reset();
      job->finished = now_seconds();
      if (job->state == JobState::Done) ++stats_.done;
      if (job->state == JobState::Failed) ++stats_.failed;
      if (job->state == JobState::Cancelled) ++stats_.cancelled;
      if (job->step_seconds > 0) last_step_seconds_ = job->step_seconds;
      retire(job);
    }
    done_cv_.notify_all();
  }
}

pipeline::ModelBundle& JobQueue::refiner_for(const ModelEntry& entry) {
  if (!refiner_ || refiner_path_ != entry.path) {
    refiner_.reset();
    refiner_path_.clear();
    refiner_ = loader_(entry);
    refiner_path_ = entry.path;
  }
  return *refiner_;
}

pipeline::ModelBundle& JobQueue::model_for(const ModelEntry& entry) {
  if (!resident_ || resident_path_ != entry.path) {
    // One model at a time: free the resident one before opening the next.
    resident_.reset();
    {
      std::lock_guard<std::mutex> lk(mu_);
      resident_name_.clear();
    }
    resident_path_.clear();
    resident_ = loader_(entry);
    resident_path_ = entry.path;
    std::lock_guard<std::mutex> lk(mu_);
    resident_name_ = entry.name;
  }
  return *resident_;
}

void JobQueue::execute(Job& job) {
  const JobSpec& spec = *job.spec;
  const pipeline::GenerateRequest& req = spec.req;
  auto finish = [&](JobState state, int status, std::string error, std::string detail) {
    std::lock_guard<std::mutex> lk(mu_);
    job.state = state;
    job.error_status = status;
    job.error = std::move(error);
    job.detail = std::move(detail);
  };
  if (job.cancel) return finish(JobState::Cancelled, 0, "cancelled", "cancelled before it started");

  pipeline::ModelBundle* model = nullptr;
  pipeline::ModelBundle* refiner = nullptr;
  try {
    model = &model_for(spec.model);
  } catch (const std::exception& e) {
    return finish(JobState::Failed, 500, "cannot load model", spec.model.name + ": " + e.what());
  }
  if (spec.refiner) {
    try {
      refiner = &refiner_for(*spec.refiner);
    } catch (const std::exception& e) {
      return finish(JobState::Failed, 500, "cannot load refiner", spec.refiner->name + ": " + e.what());
    }
  } else if (refiner_) {
    refiner_.reset();  // not kept for jobs that do not ask for it
    refiner_path_.clear();
  }
  const int64_t clip_skip = req.clip_skip > 0 ? req.clip_skip : model->default_clip_skip();
  try {
    model->check_clip_skip(clip_skip);
  } catch (const std::exception& e) {
    return finish(JobState::Failed, 422, "invalid field 'clip_skip'", e.what());
  }
  try {
    pipeline::validate_request(*model, req);
    if (refiner) pipeline::validate_refiner(*model, *refiner, req);
  } catch (const std::exception& e) {
    return finish(JobState::Failed, 422, "invalid request for this model", e.what());
  }
  const int per_batch = pipeline::steps_per_batch(*model, req);
  // Clip skip counts the encoder's published blocks from the end; those the weights lack
  // (SD2's last one) cannot be skipped to.
  {
    std::lock_guard<std::mutex> lk(mu_);
    job.steps = int64_t(per_batch) * req.batch_count;
    job.sampling_start = steady_seconds();
    job.clip_skip = clip_skip;
  }
  try {
    auto res = pipeline::generate(*model, req, [&](int batch, int step, int) {
      std::lock_guard<std::mutex> lk(mu_);
      job.step = std::min(job.steps, int64_t(batch) * per_batch + std::min(step, per_batch));
      if (job.step > 0)
        job.step_seconds = (steady_seconds() - job.sampling_start) / double(job.step);
      return !job.cancel.load();
    }, refiner);
    pipeline::ImageParameters p = pipeline::image_parameters(req, spec.model.stem(), clip_skip);
    if (spec.refiner) {
      p.refiner = spec.refiner->stem();
      p.refiner_switch_at = float(req.refiner_switch_at);
    }
    std::vector<JobImage> images;
    for (size_t i = 0; i < res.images.size(); ++i) {
      p.seed = res.seeds[i];
      JobImage im;
      im.seed = res.seeds[i];
      im.infotext = pipeline::format_parameters(p);
      im.png = io::encode_png(res.images[i], {{"parameters", im.infotext}});
      images.push_back(std::move(im));
    }
    std::lock_guard<std::mutex> lk(mu_);
    job.images = std::move(images);
    job.step = job.steps;
    job.state = JobState::Done;
  } catch (const std::bad_alloc&) {
    finish(JobState::Failed, 500, "generation failed", "out of memory");
  } catch (const std::exception& e) {
    if (job.cancel && std::string(e.what()) == "cancelled")
      finish(JobState::Cancelled, 0, "cancelled", "cancelled while running");
    else
      finish(JobState::Failed, 500, "generation failed", e.what());
  }
}

}  // namespace diffuse::server
