// The server under hostile clients: oversized and chunked bodies, endless headers, slow and
// idle connections, floods of long requests, clients that leave, many ranges. Each case is
// driven through raw sockets where httplib's client would not misbehave as asked.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>

#include "apps/server/base64.h"
#include "io/image.h"
#include "pipeline/model_bundle.h"
#include "tests/server/server_fixture.h"

namespace diffuse::server {
namespace {

using namespace test_fixture;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The resident memory of this process (the server runs in it), in MiB.
double rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// A raw TCP connection to the server.
class Raw {
 public:
  explicit Raw(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Raw() { close(); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;
  bool ok() const { return ok_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Sends all of s unless the server answers or closes first; false then.
  bool send(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      if (readable(0)) return false;
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, 1000) <= 0) continue;
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return false;
      off += size_t(n);
      sent_ += size_t(n);
    }
    return true;
  }
  bool readable(int ms) const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
  }
  // What the server sends until it closes or `seconds` pass.
  std::string receive(double seconds) {
    std::string out;
    const auto t0 = Clock::now();
    char buf[65536];
    while (seconds_since(t0) < seconds) {
      if (!readable(50)) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
    }
    return out;
  }
  size_t sent() const { return sent_; }

 private:
  int fd_ = -1;
  bool ok_ = false;
  size_t sent_ = 0;
};

int status_of(const std::string& response) {
  return response.rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(response.c_str() + 9) : -1;
}

// A 200 MB prompt sent chunked (no Content-Length) is refused once the body passes the limit,
// not read whole; a Content-Length over the limit is refused before any body is read. Memory
// comes back to its level after fourteen such requests.
TEST_F(ServerTest, OversizedBodiesAreRefusedEarly) {
  const std::string chunk = [] {
    const std::string data(1 << 20, 'a');
    char len[16];
    std::snprintf(len, sizeof len, "%zx\r\n", data.size());
    return len + data + "\r\n";
  }();
  auto chunked = [&] {
    Raw c(server_->port());
    EXPECT_TRUE(c.ok());
    c.send(
        "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\nc\r\n{\"prompt\": \"\r\n");
    for (int i = 0; i < 200 && c.send(chunk); ++i) {
    }
    EXPECT_LT(c.sent(), size_t(100) << 20);
    return status_of(c.receive(10));
  };
  EXPECT_EQ(chunked(), 413);
  const double before = rss_mib();
  for (int i = 0; i < 10; ++i) {
    Raw c(server_->port());
    c.send(
        "POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        "application/json\r\nContent-Length: 209715200\r\n\r\n");
    EXPECT_EQ(status_of(c.receive(10)), 413);
    if (i % 3 == 0) {
      EXPECT_EQ(chunked(), 413);
    }
  }
  EXPECT_LT(rss_mib() - before, 200.0) << "MiB kept after fourteen refused 200 MB requests";
  EXPECT_EQ(get("/health").first, 200);
}

// A request head of a million header lines is cut off at the head limit (431), before the API
// key would be checked; the 1M-line head is never read whole.
TEST_F(ServerTest, EndlessHeadersAreCutOff) {
  Raw c(server_->port());
  c.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  const std::string lines = [] {
    std::string s;
    for (int i = 0; i < 10000; ++i) s += "X-Junk-" + std::to_string(i) + ": 0123456789\r\n";
    return s;
  }();
  for (int i = 0; i < 100 && c.send(lines); ++i) {
  }
  EXPECT_LT(c.sent(), size_t(20) << 20);
  EXPECT_EQ(status_of(c.receive(10)), 431);
  // 200 header lines of 20 bytes are too many lines, though few bytes.
  Raw d(server_->port());
  std::string head = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 200; ++i) head += "X-A" + std::to_string(i) + ": 1\r\n";
  d.send(head + "\r\n");
  EXPECT_EQ(status_of(d.receive(10)), 431);
  EXPECT_EQ(get("/health").first, 200);
}

// 40 connections sending a header byte now and then, 40 that send a POST's headers and then
// nothing, and 200 idle ones hold no request thread: /health answers at once (within 2 s on a
// loaded machine; it used to time out), every time.
TEST_F(ServerTest, SlowAndIdleClientsDoNotStarveOthers) {
  std::vector<std::unique_ptr<Raw>> slow, silent, idle;
  for (int i = 0; i < 40; ++i) {
    slow.push_back(std::make_unique<Raw>(server_->port()));
    slow.back()->send("G");
    silent.push_back(std::make_unique<Raw>(server_->port()));
    silent.back()->send(
        "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        "application/json\r\nContent-Length: 100\r\n\r\n{");
  }
  for (int i = 0; i < 200; ++i) idle.push_back(std::make_unique<Raw>(server_->port()));
  const std::string rest = "ET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (int round = 0; round < 5; ++round) {
    for (auto& s : slow) s->send(rest.substr(size_t(round), 1));
    const auto t0 = Clock::now();
    auto r = client()->Get("/health");
    ASSERT_TRUE(r) << "round " << round;
    EXPECT_EQ(r->status, 200);
    EXPECT_LT(seconds_since(t0), 2.0) << "round " << round;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

class SmallServerTest : public ServerTest {
  void customize(ServerOptions& o) override {
    o.max_connections = 16;
    o.http_threads = 8;
  }
};

// Connections over the cap are answered 503 and closed; once the others go, requests pass.
TEST_F(SmallServerTest, ConnectionsAreCapped) {
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 16; ++i) idle.push_back(std::make_unique<Raw>(server_->port()));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Raw extra(server_->port());
  extra.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const std::string answer = extra.receive(5);
  EXPECT_EQ(status_of(answer), 503) << answer;
  EXPECT_NE(answer.find("too many connections"), std::string::npos) << answer;
  idle.clear();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(get("/health").first, 200);
}

// 40 concurrent long txt2img requests: a bounded number wait for their images, the others are
// answered 503 at once; /health and interrupt keep answering all along.
TEST_F(SmallServerTest, LongRequestsLeaveThreadsForOthers) {
  std::atomic<int> ok{0}, busy{0}, other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 40; ++i)
    clients.emplace_back([&, i] {
      auto r = client()->Post("/sdapi/v1/txt2img",
                              small({{"prompt", "long"}, {"steps", 40}, {"seed", i}}).dump(),
                              "application/json");
      if (r && r->status == 200)
        ++ok;
      else if (r && r->status == 503 && r->body.find("busy") != std::string::npos)
        ++busy;
      else
        ++other;  // 409: interrupted below
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    EXPECT_EQ(get("/health").first, 200);
    EXPECT_EQ(post("/sdapi/v1/interrupt", std::string()).first, 200);
    EXPECT_LT(seconds_since(t0), 2.0);
  }
  for (auto& t : clients) t.join();
  EXPECT_GT(busy.load(), 0);
  EXPECT_GT(ok.load() + other.load(), 0);
  EXPECT_EQ(ok.load() + busy.load() + other.load(), 40);
}

// A client that closes its connection while its txt2img waits cancels the job.
TEST_F(ServerTest, DisconnectingClientCancelsItsJob) {
  const auto before = server_->jobs().stats();
  {
    Raw c(server_->port());
    const std::string body = small({{"prompt", "gone"}, {"steps", 100}, {"n_iter", 50}}).dump();
    c.send(
        "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body);
    for (int i = 0; i < 500 && !server_->jobs().current(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(server_->jobs().current());
  }
  const auto t0 = Clock::now();
  while (server_->jobs().current() && seconds_since(t0) < 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(server_->jobs().current());
  EXPECT_EQ(server_->jobs().stats().cancelled - before.cancelled, 1);
}

// A Range header of 2000 ranges gets the page once (Range is ignored), not a multipart answer
// 2000 pages long.
TEST_F(ServerTest, ManyRangesGetThePageOnce) {
  const auto page = client()->Get("/");
  ASSERT_TRUE(page);
  std::string ranges = "bytes=0-";
  for (int i = 0; i < 1999; ++i) ranges += ",0-";
  auto r = client()->Get("/", {{"Range", ranges}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, page->body);
}

// Finished jobs keep the request as understood, not whole request bodies: five jobs with 4 MB
// junk fields leave GET /api/jobs small.
TEST_F(ServerTest, FinishedJobsKeepNoRequestBodies) {
  const std::string junk(4 << 20, 'j');
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto [st, j] = post("/api/jobs", small({{"prompt", "kept"}, {"junk", junk}, {"steps", 1}}));
    ASSERT_EQ(st, 202) << j.dump().substr(0, 300);
    ids.push_back(j["id"]);
  }
  for (const auto& id : ids) EXPECT_EQ(wait_job(id)["state"], "done");
  auto r = client()->Get("/api/jobs");
  ASSERT_TRUE(r);
  EXPECT_LT(r->body.size(), size_t(64) << 10);
  const json one = get("/api/jobs/" + ids[0]).second;
  EXPECT_EQ(one["parameters"]["prompt"], "kept");
  EXPECT_FALSE(one["parameters"].contains("junk"));
  auto [so, oa] = post("/v1/images/generations",
                       {{"prompt", "kept"}, {"size", "64x64"}, {"steps", 1}, {"junk", junk}});
  ASSERT_EQ(so, 200);
  r = client()->Get("/api/jobs");
  ASSERT_TRUE(r);
  EXPECT_LT(r->body.size(), size_t(64) << 10);
}

// The queue forgets its oldest finished jobs beyond a count and beyond a size of images.
TEST(JobQueueTest, FinishedJobsAreCapped) {
  auto failing = [](const ModelEntry&) -> std::unique_ptr<pipeline::ModelBundle> {
    throw std::runtime_error("no model here");
  };
  JobQueue q(failing, 100, 3);
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    JobSpec spec;
    spec.kind = "txt2img";
    spec.model = {"m", "/nonexistent", "safetensors"};
    spec.parameters = {{"prompt", std::string(1000, 'p')}};
    ids.push_back(q.submit(std::move(spec)));
  }
  for (const auto& id : ids) q.wait(id);
  EXPECT_EQ(q.list().size(), 3u);
  EXPECT_FALSE(q.info(ids[0]));
  EXPECT_TRUE(q.info(ids[9]));
  // 1000-byte parameters each, at most 2500 bytes kept: two jobs.
  JobQueue small(failing, 100, 100, 0, 2500);
  for (int i = 0; i < 5; ++i) {
    JobSpec spec;
    spec.model = {"m", "/nonexistent", "safetensors"};
    spec.parameters = {{"prompt", std::string(1000, 'p')}};
    small.wait(small.submit(std::move(spec)));
  }
  EXPECT_EQ(small.list().size(), 2u);
}

// A web page of another origin may not change anything: POSTs with a foreign Origin are 403,
// text/plain and form bodies 415; the server's own page (same origin) and clients without an
// Origin pass.
TEST_F(ServerTest, CrossOriginWritesAreRefused) {
  const std::string self = "http://127.0.0.1:" + std::to_string(server_->port());
  auto c = client();
  auto r =
      c->Post("/sdapi/v1/interrupt", {{"Origin", "http://evil.example"}}, "{}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("evil.example"), std::string::npos) << r->body;
  r = c->Post("/sdapi/v1/options", {{"Origin", "null"}}, R"({"CLIP_stop_at_last_layers": 3})",
              "application/json");
  EXPECT_EQ(r->status, 403);
  for (const char* type :
       {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"}) {
    r = c->Post("/sdapi/v1/options", R"({"CLIP_stop_at_last_layers": 3})", type);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 415) << type;
    EXPECT_NE(r->body.find("application/json"), std::string::npos) << r->body;
  }
  r = c->Post("/api/jobs", small({{"prompt", "x"}}).dump(), "text/plain;charset=UTF-8");
  EXPECT_EQ(r->status, 415);
  EXPECT_EQ(get("/sdapi/v1/options").second["CLIP_stop_at_last_layers"], 1);
  EXPECT_EQ(server_->jobs().stats().submitted, 0);
  // The same origin, and JSON with a charset.
  r = c->Post("/sdapi/v1/options", {{"Origin", self}}, R"({"CLIP_stop_at_last_layers": 2})",
              "application/json; charset=utf-8");
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(c->Post("/sdapi/v1/interrupt")->status, 200);  // no body, no Origin
  EXPECT_EQ(c->Get("/health", {{"Origin", "http://evil.example"}})->status, 200);
}

// DNS rebinding: a page of evil.example resolving its name to 127.0.0.1 sends "Host:
// evil.example"; a loopback-bound server answers only its loopback names.
TEST_F(ServerTest, ForeignHostNamesAreRefused) {
  const std::string port = ":" + std::to_string(server_->port());
  auto c = client();
  for (const std::string& host :
       std::vector<std::string>{"evil.example", "evil.example" + port, "10.0.0.1" + port}) {
    auto r = c->Get("/sdapi/v1/options", {{"Host", host}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << host;
    EXPECT_NE(r->body.find("--allow-host"), std::string::npos) << r->body;
  }
  for (const std::string& host :
       std::vector<std::string>{"localhost" + port, "127.0.0.1" + port, "[::1]" + port, "LOCALHOST",
                                "app.localhost" + port})
    EXPECT_EQ(c->Get("/sdapi/v1/options", {{"Host", host}})->status, 200) << host;
}

class AllowingServerTest : public ServerTest {
  void customize(ServerOptions& o) override {
    o.allowed_hosts = {"my.box"};
    o.allowed_origins = {"http://ui.example:3000"};
  }
};

TEST_F(AllowingServerTest, AllowedHostsAndOriginsPass) {
  auto c = client();
  EXPECT_EQ(c->Get("/sdapi/v1/options", {{"Host", "my.box:7860"}})->status, 200);
  EXPECT_EQ(c->Get("/sdapi/v1/options", {{"Host", "other.box"}})->status, 403);
  EXPECT_EQ(c->Post("/sdapi/v1/interrupt", {{"Origin", "http://ui.example:3000"}}, "{}",
                    "application/json")
                ->status,
            200);
  EXPECT_EQ(c->Post("/sdapi/v1/interrupt", {{"Origin", "http://ui.example:3001"}}, "{}",
                    "application/json")
                ->status,
            403);
}

// A LoRA folder with a symlink loop and a folder that cannot be read.
std::string looping_lora_dir() {
  static const std::string dir = [] {
    const fs::path d = fs::path(test::temp_dir()) / "looping-loras";
    fs::create_directories(d / "sub");
    fs::create_directory_symlink(d, d / "sub" / "loop");
    fs::create_directory_symlink(d / "sub", d / "again");
    return d.string();
  }();
  return dir;
}

class LoopingLoraServerTest : public ServerTest {
  void customize(ServerOptions& o) override { o.lora_dir = looping_lora_dir(); }
};

// Requests that cannot be generated are the client's errors (4xx naming the problem), not the
// server's; no answer shows where the server keeps its files.
TEST_F(LoopingLoraServerTest, ClientErrorsAre4xxWithoutServerPaths) {
  const std::string init =
      base64_encode(io::encode_png(io::Image{64, 64, 3, std::vector<uint8_t>(64 * 64 * 3, 128)}));
  struct Case {
    std::string path;
    json body;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {"/sdapi/v1/img2img",
       {{"init_images", {init}}, {"steps", 2}, {"denoising_strength", 0.1}},
       "denoising_strength"},
      {"/sdapi/v1/txt2img", small({{"clip_skip", 48}}), "clip_skip"},
      {"/sdapi/v1/txt2img", small({{"prompt", "<lora:" + std::string(19000, 'n') + ":1>"}}),
       "<lora:"},
      {"/sdapi/v1/txt2img", small({{"prompt", "<lora:" + std::string(100000, 'n') + ":1>"}}),
       "--max-prompt-length"},
      {"/sdapi/v1/txt2img", small({{"prompt", "<lora:absent:1>"}}), "absent"},
  };
  const std::string dirs[] = {model_dir(), looping_lora_dir(), test::reference_dir()};
  for (const auto& c : cases) {
    auto [st, j] = post(c.path, c.body);
    EXPECT_GE(st, 400) << c.mentions << ": " << j.dump().substr(0, 300);
    EXPECT_LT(st, 500) << c.mentions << ": " << j.dump().substr(0, 300);
    const std::string text = j.dump();
    EXPECT_NE(text.find(c.mentions), std::string::npos) << text.substr(0, 300);
    for (const auto& d : dirs) EXPECT_EQ(text.find(d), std::string::npos) << text.substr(0, 300);
  }
  for (int i = 0; i < 2; ++i) {
    auto [st, list] = get("/sdapi/v1/loras");
    EXPECT_EQ(st, 200) << list.dump();
    EXPECT_TRUE(list.is_array());
  }
}

// Request limits with A1111's defaults, each refused naming its limit and option; a server
// may set its own.
TEST_F(ServerTest, RequestLimitsNameTheirOption) {
  struct Case {
    std::string path;
    json body;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {"/sdapi/v1/txt2img", small({{"steps", 151}}), "150 (--max-steps)"},
      {"/sdapi/v1/txt2img", small({{"batch_size", 9}}), "8 (--max-batch-size)"},
      {"/sdapi/v1/txt2img", small({{"n_iter", 101}}), "100 (--max-batch-count)"},
      {"/sdapi/v1/txt2img", small({{"prompt", std::string(20001, 'a')}}), "--max-prompt-length"},
      {"/api/jobs", small({{"negative_prompt", std::string(20001, 'a')}}), "--max-prompt-length"},
      {"/v1/images/generations",
       {{"prompt", "x"}, {"size", "64x64"}, {"steps", 151}},
       "--max-steps"},
      {"/v1/images/generations", {{"prompt", std::string(1 << 20, 'a')}}, "--max-prompt-length"},
  };
  for (const auto& c : cases) {
    auto [st, j] = post(c.path, c.body);
    EXPECT_EQ(st, 422) << c.mentions;
    EXPECT_NE(j.value("detail", "").find(c.mentions), std::string::npos) << j.dump();
  }
  EXPECT_EQ(server_->jobs().stats().submitted, 0);
  auto [st, j] = post("/sdapi/v1/txt2img", small({{"steps", 1}, {"batch_size", 8}}));
  EXPECT_EQ(st, 200) << j.dump().substr(0, 300);
}

class LimitedServerTest : public ServerTest {
  void customize(ServerOptions& o) override {
    o.max_steps = 4;
    o.max_batch_size = 2;
    o.max_prompt_length = 10;
  }
};

TEST_F(LimitedServerTest, ItsOwnLimits) {
  EXPECT_EQ(post("/sdapi/v1/txt2img", small({{"steps", 5}})).first, 422);
  EXPECT_EQ(post("/v1/images/generations", {{"prompt", "x"}, {"n", 3}}).first, 422);
  EXPECT_EQ(post("/sdapi/v1/txt2img", small({{"prompt", "eleven char"}})).first, 422);
  EXPECT_EQ(
      post("/sdapi/v1/txt2img", small({{"steps", 4}, {"batch_size", 2}, {"prompt", "ten chars!"}}))
          .first,
      200);
}

}  // namespace
}  // namespace diffuse::server
