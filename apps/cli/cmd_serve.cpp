// diffuse serve: AUTOMATIC1111- and OpenAI-compatible HTTP APIs and a web page.
#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include "apps/cli/command.h"
#include "apps/cli/common.h"
#include "apps/server/server.h"

namespace diffuse::cli {
namespace {

struct ServeArgs {
  server::ServerOptions opt;
  std::string precision = "auto";
  int threads = 0;
  bool quiet = false;
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

int run_serve(ServeArgs& a) {
  a.opt.threads = a.threads;
  a.opt.precision = pipeline::parse_precision(a.precision);
  a.opt.data_dir = data_dir();
  a.opt.log_requests = !a.quiet;
  // SIGINT/SIGTERM are taken by one thread that stops the server; every other thread (HTTP
  // workers, the job worker) starts with them blocked.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  server::Server srv(a.opt);
  const int port = srv.bind();
  if (!is_loopback(a.opt.host) && a.opt.api_key.empty())
    std::fprintf(stderr, "diffuse serve: warning: listening on %s without --api-key\n",
                 a.opt.host.c_str());
  const std::string host =
      a.opt.host.find(':') != std::string::npos ? "[" + a.opt.host + "]" : a.opt.host;
  std::printf("diffuse serve: listening on http://%s:%d/ (models in %s)\n", host.c_str(), port,
              a.opt.model_dir.c_str());
  std::fflush(stdout);
  std::thread signals([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig == SIGINT || sig == SIGTERM) {
      std::fprintf(stderr, "diffuse serve: stopping\n");
      srv.stop();
    }
  });
  srv.listen();
  srv.stop();
  // Wake the signal thread if the server stopped by itself.
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  return 0;
}

Command serve_cmd(
    "serve", "Serve the models of a folder over HTTP: A1111 and OpenAI-style APIs, and a web page",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ServeArgs>();
      auto& o = a->opt;
      sub.add_option("--model-dir", o.model_dir,
                     "Folder of models: diffusers folders and .safetensors, .ckpt, .gguf files "
                     "(requests name them by file or folder name)")
          ->required();
      sub.add_option("--host", o.host, "Address to listen on (default: loopback only)")
          ->capture_default_str();
      sub.add_option("--port", o.port, "Port (0: any free port, printed)")
          ->capture_default_str()
          ->check(CLI::Range(0, 65535));
      sub.add_option("--api-key", o.api_key,
                     "Require this key (Authorization: Bearer KEY, or X-API-Key) on every request "
                     "except /health and the web page's own files (/, /index.html, /app.js, "
                     "/style.css), which hold nothing secret and ask for the key")
          ->envname("DIFFUSE_API_KEY");
      sub.add_option("--allow-host", o.allowed_hosts,
                     "A host name that requests may use besides loopback names and the --host "
                     "address (repeatable; '*': any). Other Host headers get 403: a web page "
                     "cannot reach the server through a name of its own (DNS rebinding)");
      sub.add_option("--allow-origin", o.allowed_origins,
                     "An origin (http://host:port) whose web pages may send POST/DELETE "
                     "requests (repeatable; '*': any). Pages of other origins get 403");
      sub.add_option("--max-size", o.max_size, "Largest width or height a request may ask for")
          ->capture_default_str()
          ->check(CLI::Range(8, 16384));
      sub.add_option("--max-steps", o.max_steps, "Most sampler steps a request may ask for")
          ->capture_default_str()
          ->check(CLI::Range(1, 1000));
      sub.add_option("--max-batch-size", o.max_batch_size, "Most images a request's batch may have")
          ->capture_default_str()
          ->check(CLI::Range(1, 64));
      sub.add_option("--max-batch-count", o.max_batch_count, "Most batches a request may ask for")
          ->capture_default_str()
          ->check(CLI::Range(1, 10000));
      sub.add_option("--max-prompt-length", o.max_prompt_length,
                     "Most characters a prompt (or negative prompt) may have")
          ->capture_default_str()
          ->check(CLI::Range(1, 10000000));
      sub.add_option("-m,--model", o.default_model,
                     "The model used when a request names none (default: the first)");
      sub.add_flag("--vae-tiling", o.vae_tiling,
                   "Decode images larger than the VAE's tile (512 px for SD) in overlapping "
                   "tiles: the decoder's memory stays one tile's at any size");
      sub.add_option("--lora-dir", o.lora_dir,
                     "Folder of LoRA files (kohya .safetensors) that prompts apply with "
                     "<lora:NAME:WEIGHT>");
      sub.add_option("--config", o.config_dir,
                     "A diffusers folder whose configs describe single-file models");
      add_precision_option(sub, a->precision);
      sub.add_option("--max-queue", o.max_queue, "Jobs that may wait at once (more get 503)")
          ->capture_default_str()
          ->check(CLI::Range(1, 100000));
      add_threads_option(sub, a->threads, "CPU threads for generation");
      sub.add_flag("-q,--quiet", a->quiet, "Do not log requests");
      sub.footer(
          "Endpoints: / (web page), "
          "/sdapi/v1/{txt2img,img2img,progress,interrupt,samplers,schedulers,\n"
          "sd-models,options}, /v1/images/generations, /api/jobs, /health.\n"
          "Example:\n"
          "  diffuse serve --model-dir ~/models --port 7860\n"
          "  curl -s localhost:7860/sdapi/v1/txt2img -H 'Content-Type: application/json' \\\n"
          "    -d '{\"prompt\": \"a fox\", \"steps\": 20}'\n"
          "Requests that change state must be JSON (Content-Type: application/json) and, from a\n"
          "browser, come from the server's own page (or an --allow-origin).");
      return [a]() { return run_serve(*a); };
    });

}  // namespace
}  // namespace diffuse::cli
