// The job queue of the server: one worker thread runs one generation at a time, in the order
// the jobs came; the others wait. Jobs have ids and states (queued, running, done, cancelled,
// failed), progress and an ETA from the timing of their steps, and can be cancelled. One model
// is resident at a time, loaded when a job first needs it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "apps/server/model_dir.h"
#include "pipeline/generate.h"

namespace diffuse::server {

// What a job runs: a generation request on a model.
struct JobSpec {
  std::string kind;  // txt2img, img2img, openai
  ModelEntry model;
  std::optional<ModelEntry> refiner;  // A1111's refiner_checkpoint (the SDXL refiner)
  pipeline::GenerateRequest req;  // seed already resolved (never -1)
  nlohmann::json parameters;      // the request as understood (echoed back to the client)
};

enum class JobState { Queued, Running, Done, Cancelled, Failed };
const char* job_state_name(JobState s);
inline bool is_finished(JobState s) {
  return s != JobState::Queued && s != JobState::Running;
}

struct JobImage {
  std::string png;  // PNG bytes with the "parameters" text chunk
  int64_t seed = 0;
  std::string infotext;  // the same text as the chunk
};

// A consistent copy of a job's state.
struct JobInfo {
  std::string id;
  std::shared_ptr<const JobSpec> spec;
  JobState state = JobState::Queued;
  int queue_position = -1;      // 0 = next to run; -1 when not queued
  int64_t step = 0, steps = 0;  // sampler steps done and to do over the whole job (0 until known)
  double progress = 0;          // 0..1
  double eta_seconds = 0;       // estimated time left (running jobs)
  int error_status = 0;         // HTTP status of a failure (422 invalid for the model, 500 ...)
  std::string error, detail;
  std::vector<JobImage> images;                   // done jobs (when asked for)
  double created = 0, started = 0, finished = 0;  // seconds since the epoch; 0 = not yet
  int64_t clip_skip = 0;                          // as run (the model's default resolved)
};

struct QueueStats {
  int64_t submitted = 0;  // accepted jobs
  int64_t done = 0, failed = 0, cancelled = 0;
  int64_t refused = 0;    // not accepted: the queue was full
  int64_t waited = 0;     // jobs that had to wait behind another one
  int64_t max_depth = 0;  // most jobs queued at once (not counting the running one)
};

class JobQueue {
 public:
  // Opens a model; called on the worker thread when a job needs a model that is not resident.
  using ModelLoader = std::function<std::unique_ptr<pipeline::ModelBundle>(const ModelEntry&)>;

  // threads > 0: the CPU threads a generation uses (set on the worker thread). Finished jobs
  // are kept (for the job API) up to keep_finished of them and max_finished_bytes of images.
  explicit JobQueue(ModelLoader loader, size_t max_queued = 256, size_t keep_finished = 256,
                    int threads = 0, size_t max_finished_bytes = size_t(256) << 20);
  ~JobQueue();
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Queues a job and returns its id. Throws ApiError 503 when max_queued jobs already wait.
  std::string submit(JobSpec spec);
  // The job's state; nullopt for an unknown (or long forgotten) id.
  std::optional<JobInfo> info(const std::string& id, bool with_images = true) const;
  // Blocks until the job has finished and returns its final state (nullopt if unknown).
  std::optional<JobInfo> wait(const std::string& id);
  // Waits at most `seconds` for the job to finish: its state then, finished or not.
  std::optional<JobInfo> wait_for(const std::string& id, double seconds);
  // A queued job is cancelled at once; a running one stops after its current step. False for
  // an unknown id; true (and no change) for a finished job.
  bool cancel(const std::string& id);
  // Cancels the running job (A1111's interrupt); false when none runs.
  bool interrupt();
  // The running job, if any.
  std::optional<JobInfo> current() const;
  // Queued and running jobs, then finished ones, newest first (without images).
  std::vector<JobInfo> list() const;
  size_t queued() const;
  QueueStats stats() const;
  // The resident model's name ("" when none is loaded).
  std::string resident_model() const;
  // Cancels everything and stops the worker (the destructor calls it).
  void shutdown();

 private:
  struct Job;
  void worker_loop();
  void execute(Job& job);
  JobInfo snapshot(const Job& job, bool with_images) const;   // mu_ held
  void retire(const std::shared_ptr<Job>& job);               // mu_ held
  pipeline::ModelBundle& model_for(const ModelEntry& entry);  // worker thread only
  pipeline::ModelBundle& refiner_for(const ModelEntry& entry);  // worker thread only

  ModelLoader loader_;
  size_t max_queued_, keep_finished_, max_finished_bytes_;
  size_t finished_bytes_ = 0;  // of the jobs in finished_
  int threads_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::shared_ptr<Job> running_;
  std::deque<std::shared_ptr<Job>> finished_;  // oldest first
  std::unordered_map<std::string, std::shared_ptr<Job>> by_id_;
  QueueStats stats_;
  bool stopping_ = false;
  double last_step_seconds_ = 0;  // per step of the last job, for the first ETA of the next
  // Worker-thread state: the resident model.
  std::unique_ptr<pipeline::ModelBundle> resident_;
  std::string resident_path_, resident_name_;
  // The refiner of the last job that asked for one, kept beside the model.
  std::unique_ptr<pipeline::ModelBundle> refiner_;
  std::string refiner_path_;
  std::thread worker_;
};

}  // namespace diffuse::server
