// The error a request handler throws to answer with an HTTP status and a JSON body
// {"error": "...", "detail": "..."}.
#pragma once
#include <stdexcept>
#include <string>

namespace diffuse::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string error, std::string detail = "")
      : std::runtime_error(error),
        status(status),
        error(std::move(error)),
        detail(std::move(detail)) {}
  int status;  // 400, 401, 404, 409, 422, 503...
  std::string error, detail;
};

}  // namespace diffuse::server
