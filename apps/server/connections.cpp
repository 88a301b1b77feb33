#include "apps/server/connections.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace diffuse::server {

namespace {

thread_local ConnectionState* t_current = nullptr;

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

int ms_until(double deadline) {
  return int(std::clamp((deadline - now()) * 1000.0, 0.0, 3600e3));
}

// Waits up to `seconds` for the socket to be ready for `events`.
bool wait_for(int fd, short events, double seconds) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, int(seconds * 1000));
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

// One answer written without waiting, for a connection closed right after it.
void send_and_forget(int fd, int status, const char* reason, const std::string& error,
                     const std::string& detail) {
  const std::string body = R"({"error": ")" + error + R"(", "detail": ")" + detail + "\"}";
  const std::string msg =
      "HTTP/1.1 " + std::to_string(status) + " " + reason +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  [[maybe_unused]] const ssize_t n =
      ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void close_fd(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

// The end of a request head ("\r\n\r\n") in buf, searched from `from`; npos if not there yet.
size_t head_end(const std::string& buf, size_t from) {
  const size_t p = buf.find("\r\n\r\n", from > 3 ? from - 3 : 0);
  return p == std::string::npos ? p : p + 4;
}

// Drops the Range headers of a head: the server's answers are small, and a header with
// thousands of ranges would multiply a page into a multipart answer (RFC 9110 lets a server
// ignore Range). Returns the head's new length.
size_t drop_range_headers(std::string& buf, size_t head_len) {
  size_t line = buf.find("\r\n") + 2;
  while (line < head_len - 2) {
    const size_t end = buf.find("\r\n", line) + 2;
    if (end - line > 6 && strncasecmp(buf.data() + line, "range:", 6) == 0) {
      buf.erase(line, end - line);
      head_len -= end - line;
    } else {
      line = end;
    }
  }
  return head_len;
}

std::string address_of(int fd, bool peer, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                     : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  char host[NI_MAXHOST] = "", serv[NI_MAXSERV] = "";
  if (r != 0 || ::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv,
                              sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    port = 0;
    return "";
  }
  port = std::atoi(serv);
  return host;
}

// A socket as httplib's Stream: first the bytes already read (the head, maybe more), then the
// socket, with a read timeout and a cap on the body's bytes.
class GuardedStream : public httplib::Stream {
 public:
  GuardedStream(int fd, std::string buffered, size_t head_len, const ConnectionLimits& l,
                ConnectionState& state)
      : fd_(fd), buf_(std::move(buffered)), head_len_(head_len), limits_(l), state_(state) {}

  bool is_readable() const override {
    return off_ < buf_.size() || wait_for(fd_, POLLIN, limits_.read_timeout);
  }
  bool is_writable() const override { return wait_for(fd_, POLLOUT, limits_.write_timeout); }

  ssize_t read(char* ptr, size_t size) override {
    if (consumed_ >= head_len_) {
      const size_t body = consumed_ - head_len_;
      if (body >= limits_.max_body) {
        state_.body_too_large = state_.close = true;
        return -1;
      }
      size = std::min(size, limits_.max_body - body);
    }
    if (off_ < buf_.size()) {
      const size_t n = std::min(size, buf_.size() - off_);
      std::memcpy(ptr, buf_.data() + off_, n);
      off_ += n;
      consumed_ += n;
      return ssize_t(n);
    }
    if (!wait_for(fd_, POLLIN, limits_.read_timeout)) {
      state_.close = true;
      return -1;
    }
    const ssize_t n = ::recv(fd_, ptr, size, 0);
    if (n <= 0) state_.close = true;
    if (n > 0) consumed_ += size_t(n);
    return n;
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!wait_for(fd_, POLLOUT, limits_.write_timeout)) return -1;
    return ::send(fd_, ptr, size, MSG_NOSIGNAL);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = address_of(fd_, true, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = address_of(fd_, false, port);
  }
  socket_t socket() const override { return fd_; }

  // The bytes read ahead that no request consumed (the start of the next one).
  std::string leftover() const { return buf_.substr(off_); }

 private:
  int fd_;
  std::string buf_;
  size_t off_ = 0, head_len_, consumed_ = 0;
  const ConnectionLimits& limits_;
  ConnectionState& state_;
};

}  // namespace

struct GuardedHttpServer::Impl {
  // A connection between requests: waiting for (the rest of) a head.
  struct Conn {
    int fd = -1;
    std::string buf;
    double deadline = 0;
    bool started = false;  // a byte of the head has come
    size_t need = 0;       // bytes to read before a worker takes it (0: head not complete)
  };

  GuardedHttpServer& owner;
  ConnectionLimits limits;
  std::mutex mu;
  std::condition_variable ready_cv;
  std::vector<Conn> idle;        // watched by the poll thread
  std::deque<Conn> ready;        // complete heads waiting for a worker
  std::unordered_set<int> open;  // every connection not yet closed
  bool stopping = false;
  int wake_fd = -1;
  std::thread poller;
  std::vector<std::thread> workers;

  Impl(GuardedHttpServer& o, ConnectionLimits l) : owner(o), limits(l) {
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    poller = std::thread([this] { poll_loop(); });
    for (int i = 0; i < std::max(1, limits.workers); ++i)
      workers.emplace_back([this] { work_loop(); });
  }

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd, &one, sizeof one);
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (stopping) return;
      stopping = true;
      // Wakes workers blocked on a client: their reads and writes fail at once.
      for (int fd : open) ::shutdown(fd, SHUT_RDWR);
    }
    wake();
    ready_cv.notify_all();
    if (poller.joinable()) poller.join();
    for (auto& w : workers)
      if (w.joinable()) w.join();
    std::lock_guard<std::mutex> lk(mu);
    for (auto& c : idle) ::close(c.fd);
    for (auto& c : ready) ::close(c.fd);
    idle.clear();
    ready.clear();
    open.clear();
    if (wake_fd >= 0) ::close(wake_fd);
    wake_fd = -1;
  }

  void forget(int fd) {  // mu held
    open.erase(fd);
    close_fd(fd);
  }

  // A new connection (on the accept thread): watched until its head is complete.
  void accept(int fd) {
    std::lock_guard<std::mutex> lk(mu);
    if (stopping || open.size() >= limits.max_connections) {
      send_and_forget(fd, 503, "Service Unavailable", "too many connections",
                      std::to_string(open.size()) + " connections are open; try again later");
      close_fd(fd);
      return;
    }
    open.insert(fd);
    idle.push_back({fd, std::string(), now() + limits.head_timeout, false});
    wake();
  }

  // A connection whose request was answered and that stays open: back to waiting.
  void keep(int fd, std::string leftover) {
    std::lock_guard<std::mutex> lk(mu);
    if (stopping) return forget(fd);
    Conn c{fd, std::move(leftover), now() + limits.idle_timeout, false};
    if (!c.buf.empty()) {
      c.started = true;
      c.deadline = now() + limits.head_timeout;
      if (const size_t end = head_end(c.buf, 0); end != std::string::npos) {
        c.need = end + buffered_body(c.buf, end);
        if (c.buf.size() >= c.need) {
          dispatch(c);
          return;
        }
      }
    }
    idle.push_back(std::move(c));
    wake();
  }

  // A complete request (or head) goes to a worker; false: no longer watched.
  bool dispatch(Conn& c) {
    ready.push_back(std::move(c));
    ready_cv.notify_one();
    return false;
  }

  // How much of the body the poll thread waits for before a worker takes the request: all of
  // a small one with a Content-Length (a client that sends headers and then nothing holds no
  // worker), none of a large, chunked or "Expect: 100-continue" one (its worker reads it).
  size_t buffered_body(const std::string& buf, size_t head_len) const {
    std::string head = buf.substr(0, head_len);
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char ch) { return char(std::tolower(ch)); });
    if (head.find("\r\nexpect:") != std::string::npos) return 0;
    const size_t p = head.find("\r\ncontent-length:");
    if (p == std::string::npos) return 0;
    const size_t len = std::strtoull(head.c_str() + p + 17, nullptr, 10);
    return len <= limits.max_buffered_body ? len : 0;
  }

  // Reads what a watched connection has; true when it stays watched.
  bool read_some(Conn& c) {
    char tmp[16384];
    const ssize_t n = ::recv(c.fd, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      forget(c.fd);
      return false;
    }
    if (n < 0) return true;
    const size_t from = c.buf.size();
    c.buf.append(tmp, size_t(n));
    if (!c.started) {
      c.started = true;
      c.deadline = now() + limits.head_timeout;
    }
    if (c.need > 0) return c.buf.size() < c.need || dispatch(c);
    const size_t end = head_end(c.buf, from);
    if (end == std::string::npos) {
      if (c.buf.size() <= limits.max_head) return true;
    } else if (end <= limits.max_head && size_t(std::count(c.buf.begin(), c.buf.begin() + end,
                                                           '\n')) <= limits.max_header_lines + 2) {
      c.need = end + buffered_body(c.buf, end);
      return c.buf.size() < c.need || dispatch(c);
    }
    send_and_forget(c.fd, 431, "Request Header Fields Too Large", "request too large",
                    "the request line and headers are over " + std::to_string(limits.max_head) +
                        " bytes or " + std::to_string(limits.max_header_lines) + " lines");
    forget(c.fd);
    return false;
  }

  void poll_loop() {
    std::vector<pollfd> fds;
    for (;;) {
      int timeout = 1000;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (stopping) return;
        fds.assign(1, pollfd{wake_fd, POLLIN, 0});
        for (const auto& c : idle) {
          fds.push_back({c.fd, POLLIN, 0});
          timeout = std::min(timeout, ms_until(c.deadline) + 1);
        }
      }
      const int r = ::poll(fds.data(), fds.size(), timeout);
      if (r < 0 && errno != EINTR) return;
      std::lock_guard<std::mutex> lk(mu);
      if (stopping) return;
      if (fds[0].revents) {
        uint64_t v;
        while (::read(wake_fd, &v, sizeof v) > 0) {
        }
      }
      // `idle` only grows at its end while the lock was released: fds[i + 1] is idle[i].
      std::vector<Conn> still;
      still.reserve(idle.size());
      const double t = now();
      for (size_t i = 0; i < idle.size(); ++i) {
        Conn& c = idle[i];
        const short ev = i + 1 < fds.size() ? fds[i + 1].revents : 0;
        if (ev & (POLLIN | POLLHUP | POLLERR)) {
          if (!read_some(c)) continue;
        }
        if (t >= c.deadline) {
          if (c.started)
            send_and_forget(c.fd, 408, "Request Timeout", "request timeout",
                            "the request's headers did not arrive in time");
          forget(c.fd);
          continue;
        }
        still.push_back(std::move(c));
      }
      idle.swap(still);
    }
  }

  void work_loop() {
    for (;;) {
      Conn c;
      {
        std::unique_lock<std::mutex> lk(mu);
        ready_cv.wait(lk, [&] { return stopping || !ready.empty(); });
        if (stopping) return;
        c = std::move(ready.front());
        ready.pop_front();
      }
      serve(std::move(c));
    }
  }

  // Answers the request whose head is in c.buf, then keeps or closes the connection.
  void serve(Conn c) {
    const size_t head_len = drop_range_headers(c.buf, head_end(c.buf, 0));
    ConnectionState state;
    state.fd = c.fd;
    GuardedStream strm(c.fd, std::move(c.buf), head_len, limits, state);
    t_current = &state;
    bool closed = false, ok = false;
    try {
      ok = owner.process_request(strm, false, closed, nullptr);
    } catch (...) {
      ok = false;
    }
    t_current = nullptr;
    if (!ok || closed || state.close) {
      std::lock_guard<std::mutex> lk(mu);
      forget(c.fd);
      return;
    }
    keep(c.fd, strm.leftover());
  }
};

GuardedHttpServer::GuardedHttpServer(ConnectionLimits limits)
    : impl_(std::make_unique<Impl>(*this, limits)) {
  // The accept loop hands each socket over at once: the poll thread and the workers serve it.
  struct Inline : httplib::TaskQueue {
    void enqueue(std::function<void()> fn) override { fn(); }
    void shutdown() override {}
  };
  new_task_queue = [] { return new Inline; };
  set_read_timeout(time_t(limits.read_timeout), 0);
  set_write_timeout(time_t(limits.write_timeout), 0);
}

GuardedHttpServer::~GuardedHttpServer() {
  stop_connections();
}

void GuardedHttpServer::stop_connections() {
  impl_->stop();
}

const ConnectionLimits& GuardedHttpServer::limits() const {
  return impl_->limits;
}

ConnectionState* GuardedHttpServer::current() {
  return t_current;
}

bool GuardedHttpServer::client_gone() {
  if (!t_current || t_current->fd < 0) return false;
  pollfd p{t_current->fd, short(POLLIN | POLLRDHUP), 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
  char c;
  return ::recv(t_current->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  impl_->accept(sock);
  return true;
}

}  // namespace diffuse::server
