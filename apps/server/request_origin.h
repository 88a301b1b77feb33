// Where a request comes from, as a browser tells it: the Host header (a DNS-rebinding page
// reaches a loopback server under its own host name) and the Origin and Content-Type of
// state-changing requests (any web page may send a cross-origin text/plain or form POST).
#pragma once
#include <string>
#include <vector>

namespace diffuse::server {

// The host name of a Host header, without its port, lower-cased ("[::1]:80" -> "::1").
std::string host_name(const std::string& host_header);

// True when a Host header names this server: a loopback name or address, the bound address,
// any IP address when bound to all (0.0.0.0 or ::), or a name of `allowed` ("*": any).
bool host_allowed(const std::string& host_header, const std::string& bound_host,
                  const std::vector<std::string>& allowed);

// True when an Origin header is this server's own page (http://HOST as the request's Host
// header) or one of `allowed` ("*": any).
bool origin_allowed(const std::string& origin, const std::string& host_header,
                    const std::vector<std::string>& allowed);

// True for a Content-Type a JSON API takes: application/json, with parameters or not.
bool is_json_content_type(const std::string& content_type);

}  // namespace diffuse::server
