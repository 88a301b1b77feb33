// The server's connection handling under hostile clients. httplib serves each connection on a
// pool thread from accept to close, so idle or slow connections (a header byte every few
// seconds) hold every thread and starve the others. Here an httplib::Server hands each
// accepted socket to one poll thread instead: it waits for a request's head (request line and
// headers) without a thread per connection, within a size and a time limit, and only a complete
// head goes to a worker, which reads the body (within a size limit and a read timeout) and
// answers through httplib's request processing. Open connections are capped; one more is
// answered 503 and closed.
#pragma once
#include <httplib.h>

#include <cstddef>
#include <memory>

namespace diffuse::server {

struct ConnectionLimits {
  int workers = 32;                    // requests processed at once
  size_t max_connections = 512;        // open connections, idle ones included
  size_t max_head = 64 << 10;          // bytes of request line and headers
  size_t max_header_lines = 100;       // header lines of one request
  size_t max_body = 64 << 20;          // bytes of a body as sent (chunked framing included)
  size_t max_buffered_body = 1 << 20;  // a body up to this size is read with its head
  double head_timeout = 10;            // seconds for a whole head (and a buffered body) to arrive
  double idle_timeout = 5;             // seconds a kept-alive connection may wait for a request
  double read_timeout = 10;            // seconds one read of a larger body may wait
  double write_timeout = 30;           // seconds one write of a response may wait
};

// What a handler may ask about the connection its request came on (the thread's own).
struct ConnectionState {
  int fd = -1;
  bool body_too_large = false;  // the body went over max_body: the read failed
  bool close = false;           // close the connection after this response
};

class GuardedHttpServer : public httplib::Server {
 public:
  explicit GuardedHttpServer(ConnectionLimits limits);
  ~GuardedHttpServer() override;

  // Stops the poll thread and the workers (after httplib's stop()); safe more than once.
  void stop_connections();
  const ConnectionLimits& limits() const;

  // The connection the calling thread is answering; nullptr outside a request.
  static ConnectionState* current();
  // True when the calling thread's client has closed its connection (a request waiting for a
  // job checks this to cancel it).
  static bool client_gone();

 private:
  bool process_and_close_socket(socket_t sock) override;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  friend struct Impl;
};

}  // namespace diffuse::server
