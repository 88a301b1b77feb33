#include "apps/server/request_origin.h"

#include <arpa/inet.h>

#include <algorithm>

namespace diffuse::server {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

bool is_ip(const std::string& h) {
  unsigned char buf[16];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

bool is_loopback(const std::string& h) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, h.c_str(), buf) == 1) return buf[0] == 127;
  return h == "::1" || h == "localhost" ||
         (h.size() > 10 && h.compare(h.size() - 10, 10, ".localhost") == 0);
}

bool listed(const std::string& name, const std::vector<std::string>& allowed) {
  for (const auto& a : allowed)
    if (a == "*" || lower(a) == name) return true;
  return false;
}

}  // namespace

std::string host_name(const std::string& host_header) {
  std::string h = lower(host_header);
  if (!h.empty() && h[0] == '[') {
    const size_t close = h.find(']');
    return close == std::string::npos ? h : h.substr(1, close - 1);
  }
  if (std::count(h.begin(), h.end(), ':') == 1) h.resize(h.find(':'));
  return h;
}

bool host_allowed(const std::string& host_header, const std::string& bound_host,
                  const std::vector<std::string>& allowed) {
  const std::string h = host_name(host_header);
  if (is_loopback(h) || listed(h, allowed)) return true;
  const std::string bound = host_name(bound_host);
  if (bound == "0.0.0.0" || bound == "::" || bound.empty()) return is_ip(h);
  return h == bound;
}

bool origin_allowed(const std::string& origin, const std::string& host_header,
                    const std::vector<std::string>& allowed) {
  const std::string o = lower(origin);
  if (o == "http://" + lower(host_header) || o == "https://" + lower(host_header)) return true;
  return listed(o, allowed);
}

bool is_json_content_type(const std::string& content_type) {
  std::string t = lower(content_type);
  t = t.substr(0, t.find(';'));
  t.erase(std::remove(t.begin(), t.end(), ' '), t.end());
  return t == "application/json";
}

}  // namespace diffuse::server
