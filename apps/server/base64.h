// Base64 (RFC 4648, standard alphabet) for the images that the HTTP APIs carry.
#pragma once
#include <string>
#include <string_view>

namespace diffuse::server {

std::string base64_encode(std::string_view bytes);

// Decodes base64 text: whitespace is skipped, padding is optional, and a data URL prefix
// ("data:image/png;base64,") is dropped. Throws diffuse::Error on any other character.
std::string base64_decode(std::string_view text);

}  // namespace diffuse::server
