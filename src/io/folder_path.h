// Paths named inside a model's own files (a sharded index's weight_map, ...) must stay in the
// model's folder: one check for every such name.
#pragma once
#include <filesystem>
#include <string>

namespace diffuse::io {

// dir / name, when `name` is a relative path without ".." components; otherwise throws an
// Error naming `what` (e.g. "INDEX: weight_map"): an absolute path or a way out of the folder
// could read any file the user can. Symlinks inside the folder are followed as usual (the
// Hugging Face cache links its files to blobs elsewhere).
std::filesystem::path file_in_folder(const std::filesystem::path& dir, const std::string& name,
                                     const std::string& what);

}  // namespace diffuse::io
