// The web page's files (apps/server/web/), compiled into the binary by embed_web.cmake.
#pragma once
#include <cstddef>
#include <string>

namespace diffuse::server {

struct WebAsset {
  const char* path;  // "/index.html"
  const char* mime;
  const unsigned char* data;
  size_t size;
};

// The asset served at a URL path ("/" is "/index.html"); null when none.
const WebAsset* find_web_asset(const std::string& path);

}  // namespace diffuse::server
