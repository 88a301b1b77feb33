// diffuse's HTTP server: AUTOMATIC1111's /sdapi/v1 API, an OpenAI-style
// /v1/images/generations, a job API (/api/jobs) and the web page at /. Models are the entries
// of one folder, loaded on demand, one resident at a time; a JobQueue runs one generation at a
// time. Every handler answers errors as JSON {"error", "detail"} with a 4xx/5xx status and the
// server goes on serving.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "apps/server/jobs.h"
#include "pipeline/model_bundle.h"

namespace diffuse::server {

struct ServerOptions {
  std::string model_dir;           // the models offered (required)
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 7860;                 // 0 = any free port (see Server::port())
  std::string api_key;  // when set, every request but /health and the page's files needs it
  // Host names (besides loopback ones and the bound address) that requests may name in their
  // Host header ("*": any); origins (as "http://host:port") whose pages may POST ("*": any).
  std::vector<std::string> allowed_hosts, allowed_origins;
  int max_size = 2048;  // largest width or height in pixels
  // Request limits (A1111's UI limits by default): sampler steps, images per batch, batches,
  // characters of a prompt.
  int max_steps = 150, max_batch_size = 8, max_batch_count = 100;
  size_t max_prompt_length = 20000;
  std::string default_model;  // initial sd_model_checkpoint; default: the first model
  std::string data_dir;       // fetched registry data (CLIP merges for single files)
  std::string config_dir;     // diffusers config folder for single files (optional)
  std::string lora_dir;       // LoRA files that prompts name as <lora:NAME:WEIGHT> (optional)
  pipeline::Precision precision = pipeline::Precision::Fp32;
  size_t max_queue = 256;        // jobs waiting at most; more are refused with 503
  int threads = 0;               // CPU threads per generation (0: all cores)
  int http_threads = 32;         // requests processed at once
  size_t max_connections = 512;  // open connections (idle ones included); more get 503
  int max_waiting = 0;        // synchronous requests waiting for their job (0: 3/4 of http_threads)
  bool log_requests = false;  // one line per request on stderr
  bool vae_tiling = false;    // decode images larger than the VAE's tile in tiles
};

class Server {
 public:
  // Checks the model dir and the default model; throws diffuse::Error.
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port. Throws when it cannot.
  int bind();
  // Serves until stop() (binds first when bind() was not called).
  void listen();
  // bind() and listen() on a background thread; returns once requests are answered.
  void start();
  // Stops listening and cancels the jobs (safe from any thread, and more than once).
  void stop();

  int port() const;
  const ServerOptions& options() const;
  JobQueue& jobs();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace diffuse::server
