#include "apps/server/server.h"

#include <httplib.h>

#include <sys/socket.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "apps/server/api_error.h"
#include "apps/server/api_requests.h"
#include "apps/server/base64.h"
#include "apps/server/connections.h"
#include "apps/server/model_dir.h"
#include "apps/server/request_origin.h"
#include "apps/server/web_assets.h"
#include "core/error.h"

namespace diffuse::server {

using httplib::Request;
using httplib::Response;
using nlohmann::json;

namespace {

void send_json(Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(Response& res, int status, const std::string& error, const std::string& detail) {
  send_json(res, status, {{"error", error}, {"detail", detail}});
}

// Compares without an early exit, so the time taken does not tell how much of a key matched.
bool same_key(const std::string& a, const std::string& b) {
  unsigned diff = unsigned(a.size() != b.size());
  for (size_t i = 0; i < a.size(); ++i)
    diff |= unsigned(uint8_t(a[i]) ^ uint8_t(i < b.size() ? b[i] : 0));
  return diff == 0;
}

// The key a request carries: "Authorization: Bearer KEY", "Authorization: Basic
// base64(user:KEY)" (A1111's --api-auth clients) or "X-API-Key: KEY".
std::string request_key(const Request& req) {
  if (req.has_header("X-API-Key")) return req.get_header_value("X-API-Key");
  const std::string auth = req.get_header_value("Authorization");
  if (auth.rfind("Bearer ", 0) == 0) return auth.substr(7);
  if (auth.rfind("Basic ", 0) == 0) {
    try {
      const std::string userpass = base64_decode(auth.substr(6));
      const size_t colon = userpass.find(':');
      return colon == std::string::npos ? userpass : userpass.substr(colon + 1);
    } catch (const std::exception&) {
      return "";
    }
  }
  return "";
}

std::string job_timestamp(double t) {
  const std::time_t tt = std::time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  return buf;
}

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  ModelDirectory models;
  JobQueue queue;
  GuardedHttpServer http;
  std::atomic<int> waiting{0};  // requests waiting in run_sync
  std::mutex options_mu;
  RequestDefaults defaults;  // guarded by options_mu
  int bound_port = -1;
  int listen_fd = -1;  // the listening socket, seen through httplib's socket-options hook
  std::thread thread;
  std::mutex stop_mu;
  bool stopped = false;

  static ConnectionLimits limits_of(const ServerOptions& o) {
    ConnectionLimits l;
    l.workers = std::max(4, o.http_threads);
    l.max_connections = std::max<size_t>(8, o.max_connections);
    l.max_body = kMaxJsonBody + (size_t(1) << 20);  // chunked framing included
    return l;
  }

  explicit Impl(ServerOptions o)
      : opt(std::move(o)),
        models(opt.model_dir),
        queue([this](const ModelEntry& m) { return load_model(m); }, opt.max_queue, 128,
              opt.threads),
        http(limits_of(opt)) {
    DF_CHECK(opt.max_size >= 8, "--max-size must be at least 8, got ", opt.max_size);
    hide_dir(opt.model_dir, "<model-dir>");
    hide_dir(opt.lora_dir, "<lora-dir>");
    hide_dir(opt.config_dir, "<config-dir>");
    hide_dir(opt.data_dir, "<data-dir>");
    DF_CHECK(opt.max_steps >= 1 && opt.max_steps <= 1000,
             "--max-steps must be from 1 to 1000, got ", opt.max_steps);
    DF_CHECK(opt.max_batch_size >= 1 && opt.max_batch_count >= 1,
             "--max-batch-size and --max-batch-count must be at least 1");
    defaults.max_size = opt.max_size;
    defaults.max_steps = opt.max_steps;
    defaults.max_batch_size = opt.max_batch_size;
    defaults.max_batch_count = opt.max_batch_count;
    defaults.max_prompt_length = opt.max_prompt_length;
    defaults.vae_tiling = opt.vae_tiling;
    if (!opt.lora_dir.empty()) {
      DF_CHECK(std::filesystem::is_directory(opt.lora_dir), "--lora-dir ", opt.lora_dir,
               ": not a folder");
      defaults.lora_dir = opt.lora_dir;
    }
    if (!opt.default_model.empty()) {
      try {
        defaults.model = models.find(opt.default_model).name;
      } catch (const ApiError& e) {
        DF_FAIL("model ", opt.default_model, ": ", e.error, ": ", e.detail);
      }
    } else if (auto all = models.list(); !all.empty()) {
      defaults.model = all.front().name;
    }
    routes();
  }

  std::unique_ptr<pipeline::ModelBundle> load_model(const ModelEntry& m) {
    pipeline::BundleOptions bo;
    bo.data_dir = opt.data_dir;
    bo.config_dir = opt.config_dir;
    bo.precision = opt.precision;
    if (opt.log_requests) std::fprintf(stderr, "diffuse serve: loading %s\n", m.name.c_str());
    return pipeline::ModelBundle::open(m.path, bo);
  }

  RequestDefaults current_defaults() {
    std::lock_guard<std::mutex> lk(options_mu);
    return defaults;
  }

  // Answers show no server path: the folders of the options read as <model-dir> etc.
  std::vector<std::pair<std::string, std::string>> hidden_dirs;  // longest first
  void hide_dir(const std::string& dir, const std::string& name) {
    if (dir.empty()) return;
    std::error_code ec;
    for (std::string p : {dir, std::filesystem::absolute(dir, ec).string(),
                          std::filesystem::canonical(dir, ec).string()}) {
      while (p.size() > 1 && p.back() == '/') p.pop_back();
      if (p.size() > 1) hidden_dirs.emplace_back(p, name);
    }
    std::sort(hidden_dirs.begin(), hidden_dirs.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
  std::string redact(std::string s) const {
    for (const auto& [path, name] : hidden_dirs)
      for (size_t p = s.find(path); p != std::string::npos; p = s.find(path, p + name.size()))
        s.replace(p, path.size(), name);
    return s;
  }

  json job_out(JobInfo job, bool with_images) const {
    job.detail = redact(job.detail);
    return job_json(job, with_images);
  }

  // Every handler runs through this: any exception becomes a JSON error, never a crash.
  httplib::Server::Handler guard(std::function<void(const Request&, Response&)> fn) {
    return [this, fn = std::move(fn)](const Request& req, Response& res) {
      try {
        fn(req, res);
      } catch (const ApiError& e) {
        send_error(res, e.status, e.error, redact(e.detail));
      } catch (const json::exception& e) {
        send_error(res, 422, "invalid request", e.what());
      } catch (const std::bad_alloc&) {
        send_error(res, 500, "internal error", "out of memory");
      } catch (const std::exception& e) {
        send_error(res, 500, "internal error", redact(e.what()));
      } catch (...) {
        send_error(res, 500, "internal error", "unknown exception");
      }
    };
  }

  // Runs a job to its end (as A1111's synchronous endpoints do) and answers with `respond`.
  // A request thread waits for its job: at most max_waiting of them at once (the others are
  // answered 503), so that some threads always answer /health, progress and interrupt. A
  // client that closes its connection cancels its job.
  void run_sync(JobSpec spec, Response& res, const std::function<json(const JobInfo&)>& respond) {
    const int max_waiting =
        opt.max_waiting > 0 ? opt.max_waiting : std::max(1, http.limits().workers * 3 / 4);
    if (waiting.fetch_add(1) >= max_waiting) {
      waiting.fetch_sub(1);
      throw ApiError(503, "busy",
                     str(max_waiting,
                         " requests are waiting for their images; try again later, or "
                         "queue with POST /api/jobs"));
    }
    struct Release {
      std::atomic<int>& n;
      ~Release() { n.fetch_sub(1); }
    } release{waiting};
    const std::string id = queue.submit(std::move(spec));
    std::optional<JobInfo> info;
    for (;;) {
      info = queue.wait_for(id, 0.2);
      if (!info || is_finished(info->state)) break;
      if (GuardedHttpServer::client_gone()) {
        queue.cancel(id);
        if (ConnectionState* c = GuardedHttpServer::current()) c->close = true;
        throw ApiError(499, "client closed the connection", "job " + id + " was cancelled");
      }
    }
    if (!info) throw ApiError(500, "job lost", "job " + id + " is gone");
    if (info->state == JobState::Done) return send_json(res, 200, respond(*info));
    if (info->state == JobState::Cancelled)
      throw ApiError(409, "cancelled", "job " + id + " was interrupted: " + info->detail);
    throw ApiError(info->error_status ? info->error_status : 500, info->error, info->detail);
  }

  json options_json() {
    std::lock_guard<std::mutex> lk(options_mu);
    return {{"sd_model_checkpoint", defaults.model},
            {"CLIP_stop_at_last_layers", defaults.clip_skip > 0 ? defaults.clip_skip : 1},
            {"samples_format", "png"}};
  }

  json progress_json() {
    json state = {{"skipped", false},
                  {"interrupted", false},
                  {"job", ""},
                  {"job_count", int64_t(queue.queued())},
                  {"job_timestamp", "0"},
                  {"job_no", 0},
                  {"sampling_step", 0},
                  {"sampling_steps", 0}};
    auto cur = queue.current();
    if (!cur)
      return {{"progress", 0.0},
              {"eta_relative", 0.0},
              {"state", state},
              {"current_image", nullptr},
              {"textinfo", nullptr}};
    state["job"] = cur->id;
    state["job_count"] = state["job_count"].get<int64_t>() + 1;
    state["job_timestamp"] = job_timestamp(cur->started);
    state["sampling_step"] = cur->step;
    state["sampling_steps"] = cur->steps;
    return {{"progress", cur->progress},
            {"eta_relative", cur->eta_seconds},
            {"state", state},
            {"current_image", nullptr},
            {"textinfo", str("step ", cur->step, "/", cur->steps)},
            {"id_live_preview", -1}};
  }

  json stats_json() {
    const auto s = queue.stats();
    auto cur = queue.current();
    return {{"submitted", s.submitted},
            {"served", s.done},
            {"failed", s.failed},
            {"cancelled", s.cancelled},
            {"refused", s.refused},
            {"queued", s.waited},
            {"max_queue_depth", s.max_depth},
            {"waiting", int64_t(queue.queued())},
            {"running", cur ? cur->id : std::string()},
            {"resident_model", queue.resident_model()}};
  }

  void routes();
};

void Server::Impl::routes() {
  http.set_payload_max_length(kMaxJsonBody);

  // Checked on the headers alone, before a body is read.
  http.set_pre_routing_handler([this](const Request& req, Response& res) {
    auto refuse = [&](int status, const std::string& error, const std::string& detail) {
      send_error(res, status, error, detail);
      // The body (if any) stays unread: the connection cannot serve another request.
      res.set_header("Connection", "close");
      if (ConnectionState* c = GuardedHttpServer::current()) c->close = true;
      return httplib::Server::HandlerResponse::Handled;
    };
    if (req.has_header("Content-Encoding"))
      return refuse(415, "unsupported content encoding",
                    "send the body uncompressed (Content-Encoding: " +
                        req.get_header_value("Content-Encoding") + ")");
    if (req.has_header("Content-Length")) {
      const std::string len = req.get_header_value("Content-Length");
      if (len.empty() || len.size() > 18 || len.find_first_not_of("0123456789") != len.npos ||
          std::stoull(len) > kMaxJsonBody)
        return refuse(413, "request too large",
                      str("the body is over the limit of ", kMaxJsonBody, " bytes"));
    }
    const std::string host = req.get_header_value("Host");
    if (!host.empty() && !host_allowed(host, opt.host, opt.allowed_hosts))
      return refuse(403, "unknown host",
                    "'" + host_name(host) +
                        "' is not a name of this server (serve --allow-host NAME allows it)");
    if (req.method != "GET" && req.method != "HEAD" && req.method != "OPTIONS") {
      const std::string origin = req.get_header_value("Origin");
      if (req.has_header("Origin") && !origin_allowed(origin, host, opt.allowed_origins))
        return refuse(403, "cross-origin request",
                      "pages from " + origin +
                          " may not send requests here (serve --allow-origin ORIGIN allows it)");
      if (req.has_header("Content-Type") &&
          !is_json_content_type(req.get_header_value("Content-Type")))
        return refuse(415, "unsupported content type",
                      "send JSON with Content-Type: application/json, not " +
                          req.get_header_value("Content-Type"));
    }
    // The health check and the page's files (which hold nothing secret) need no key.
    if (opt.api_key.empty() || req.path == "/health" ||
        (req.method == "GET" && find_web_asset(req.path)))
      return httplib::Server::HandlerResponse::Unhandled;
    if (same_key(request_key(req), opt.api_key)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer realm=\"diffuse\"");
    return refuse(401, "unauthorized", "this server needs an API key: Authorization: Bearer KEY");
  });
  // Statuses that httplib sets itself (no route, body too large...) get a JSON body too.
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req,
                                                                 Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (const ConnectionState* c = GuardedHttpServer::current(); c && c->body_too_large)
      res.status = 413;
    if (res.status == 404)
      send_error(res, 404, "not found", req.method + " " + req.path + " is not an endpoint");
    else if (res.status == 413)
      send_error(res, 413, "request too large", str("the body is over ", kMaxJsonBody, " bytes"));
    else
      send_error(res, res.status, "bad request", "HTTP status " + std::to_string(res.status));
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal error", what);
  });
  // Polls (GETs that succeed) are not logged: the page polls several times a second.
  if (opt.log_requests)
    http.set_logger([](const Request& req, const Response& res) {
      if (req.method == "GET" && res.status < 400) return;
      std::fprintf(stderr, "diffuse serve: %s %s %d\n", req.method.c_str(), req.path.c_str(),
                   res.status);
    });

  // The web page.
  http.Get(R"(/|/[A-Za-z0-9_.-]+\.(html|js|css|svg))", guard([](const Request& req, Response& res) {
             const WebAsset* a = find_web_asset(req.path);
             if (!a) throw ApiError(404, "not found", req.path + " is not a page");
             res.set_header("Cache-Control", "no-cache");
             res.set_content(reinterpret_cast<const char*>(a->data), a->size, a->mime);
           }));

  http.Get("/health", guard([this](const Request&, Response& res) {
             send_json(res, 200, {{"status", "ok"}, {"version", "0.1.0"}, {"queue", stats_json()}});
           }));

  // AUTOMATIC1111's API.
  http.Get("/sdapi/v1/sd-models", guard([this](const Request&, Response& res) {
             json out = json::array();
             for (const auto& m : models.list())
               out.push_back({{"title", m.name},
                              {"model_name", m.stem()},
                              {"hash", nullptr},
                              {"sha256", nullptr},
                              {"filename", m.name},
                              {"config", nullptr},
                              {"type", m.kind}});
             send_json(res, 200, out);
           }));
  // The LoRA files that prompts may name: every NAME.safetensors in --lora-dir and below.
  http.Get("/sdapi/v1/loras", guard([this](const Request&, Response& res) {
             json out = json::array();
             if (!opt.lora_dir.empty())
               for (const auto& f : list_lora_files(opt.lora_dir)) {
                 const std::string stem = std::filesystem::path(f).stem().string();
                 out.push_back({{"name", stem},
                                {"alias", stem},
                                {"path", f},  // relative to --lora-dir
                                {"metadata", json::object()}});
               }
             send_json(res, 200, out);
           }));
  http.Post("/sdapi/v1/refresh-checkpoints",
            guard([](const Request&, Response& res) { send_json(res, 200, json::object()); }));
  http.Get("/sdapi/v1/samplers",
           guard([](const Request&, Response& res) { send_json(res, 200, a1111_samplers()); }));
  http.Get("/sdapi/v1/schedulers",
           guard([](const Request&, Response& res) { send_json(res, 200, a1111_schedulers()); }));
  http.Get("/sdapi/v1/options",
           guard([this](const Request&, Response& res) { send_json(res, 200, options_json()); }));
  http.Post("/sdapi/v1/options", guard([this](const Request& req, Response& res) {
              const json body = parse_json_object(req.body);
              std::string model;
              int64_t clip = -1;
              if (auto it = body.find("sd_model_checkpoint"); it != body.end()) {
                if (!it->is_string())
                  throw ApiError(422, "invalid field 'sd_model_checkpoint'",
                                 "expected a model name");
                model = models.find(it->get<std::string>()).name;
              }
              if (auto it = body.find("CLIP_stop_at_last_layers"); it != body.end()) {
                if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 48)
                  throw ApiError(422, "invalid field 'CLIP_stop_at_last_layers'",
                                 "expected an integer from 1 to 48, got " + it->dump());
                clip = it->get<int64_t>();
              }
              {
                std::lock_guard<std::mutex> lk(options_mu);
                if (!model.empty()) defaults.model = model;
                if (clip > 0) defaults.clip_skip = clip <= 1 ? 0 : clip;
              }
              send_json(res, 200, options_json());
            }));
  http.Get("/sdapi/v1/progress",
           guard([this](const Request&, Response& res) { send_json(res, 200, progress_json()); }));
  http.Post("/sdapi/v1/interrupt", guard([this](const Request&, Response& res) {
              send_json(res, 200, {{"interrupted", queue.interrupt()}});
            }));
  for (const bool img2img : {false, true})
    http.Post(img2img ? "/sdapi/v1/img2img" : "/sdapi/v1/txt2img",
              guard([this, img2img](const Request& req, Response& res) {
                const json body = parse_json_object(req.body);
                run_sync(a1111_job(body, img2img, models, current_defaults()), res,
                         [&](const JobInfo& job) { return a1111_response(job, body); });
              }));

  // OpenAI's API.
  http.Post("/v1/images/generations", guard([this](const Request& req, Response& res) {
              run_sync(openai_job(parse_json_object(req.body), models, current_defaults()), res,
                       openai_response);
            }));
  http.Get("/v1/models", guard([this](const Request&, Response& res) {
             json data = json::array();
             for (const auto& m : models.list())
               data.push_back({{"id", m.name}, {"object", "model"}, {"owned_by", "diffuse"}});
             send_json(res, 200, {{"object", "list"}, {"data", data}});
           }));

  // The job API (the web page's): submit, poll, cancel.
  http.Post("/api/jobs", guard([this](const Request& req, Response& res) {
              const json body = parse_json_object(req.body);
              JobSpec spec =
                  a1111_job(body, body.contains("init_images"), models, current_defaults());
              const std::string id = queue.submit(std::move(spec));
              auto info = queue.info(id, false);
              if (!info) throw ApiError(500, "job lost", id);
              send_json(res, 202, job_out(*info, false));
            }));
  http.Get("/api/jobs", guard([this](const Request&, Response& res) {
             json jobs = json::array();
             for (const auto& j : queue.list()) jobs.push_back(job_out(j, false));
             send_json(res, 200, {{"jobs", jobs}, {"stats", stats_json()}});
           }));
  http.Get(R"(/api/jobs/([0-9a-f]{1,32}))", guard([this](const Request& req, Response& res) {
             auto info = queue.info(req.matches[1]);
             if (!info) throw ApiError(404, "unknown job", "no job " + std::string(req.matches[1]));
             send_json(res, 200, job_out(*info, true));
           }));
  http.Get(R"(/api/jobs/([0-9a-f]{1,32})/images/([0-9]{1,4})\.png)",
           guard([this](const Request& req, Response& res) {
             auto info = queue.info(req.matches[1]);
             if (!info) throw ApiError(404, "unknown job", "no job " + std::string(req.matches[1]));
             const size_t i = std::stoul(req.matches[2]);
             if (i >= info->images.size())
               throw ApiError(404, "no such image",
                              "the job has " + std::to_string(info->images.size()) + " images");
             res.set_content(info->images[i].png, "image/png");
           }));
  auto cancel = guard([this](const Request& req, Response& res) {
    const std::string id = req.matches[1];
    if (!queue.cancel(id)) throw ApiError(404, "unknown job", "no job " + id);
    auto info = queue.info(id, false);
    if (!info) throw ApiError(404, "unknown job", "no job " + id);
    send_json(res, 200, job_out(*info, false));
  });
  http.Post(R"(/api/jobs/([0-9a-f]{1,32})/cancel)", cancel);
  http.Delete(R"(/api/jobs/([0-9a-f]{1,32}))", cancel);
  http.Get("/api/stats",
           guard([this](const Request&, Response& res) { send_json(res, 200, stats_json()); }));
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int Server::bind() {
  auto& im = *impl_;
  if (im.bound_port > 0) return im.bound_port;
  int port = im.opt.port;
  im.http.set_socket_options([&im](int sock) {
    httplib::default_socket_options(sock);
    im.listen_fd = sock;
  });
  if (port == 0) {
    port = im.http.bind_to_any_port(im.opt.host);
  } else if (!im.http.bind_to_port(im.opt.host, port)) {
    port = -1;
  }
  DF_CHECK(port > 0, "cannot listen on ", im.opt.host, ":", im.opt.port,
           " (in use, or not an address of this machine)");
  // httplib listens with a backlog of 5: a burst of clients overflows it and the kernel drops
  // their handshakes, which clients see as connections closed unanswered. Listening again on
  // the same socket raises the backlog to the system's limit.
  if (im.listen_fd >= 0) ::listen(im.listen_fd, SOMAXCONN);
  im.bound_port = port;
  return port;
}

void Server::listen() {
  bind();
  impl_->http.listen_after_bind();
}

void Server::start() {
  bind();
  impl_->thread = std::thread([this] { impl_->http.listen_after_bind(); });
  for (int i = 0; i < 5000 && !impl_->http.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void Server::stop() {
  auto& im = *impl_;
  {
    std::lock_guard<std::mutex> lk(im.stop_mu);
    if (im.stopped) return;
    im.stopped = true;
  }
  im.queue.shutdown();  // wakes the requests that wait on jobs
  im.http.stop();
  im.http.stop_connections();
  if (im.thread.joinable() && im.thread.get_id() != std::this_thread::get_id()) im.thread.join();
}

int Server::port() const {
  return impl_->bound_port;
}
const ServerOptions& Server::options() const {
  return impl_->opt;
}
JobQueue& Server::jobs() {
  return impl_->queue;
}

}  // namespace diffuse::server
