// The models a server offers: the entries of one folder (diffusers folders and .safetensors,
// .ckpt, .gguf files), named by their file or folder names.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace diffuse::server {

struct ModelEntry {
  std::string name;  // the file or folder name: what requests name
  std::string path;  // where it is
  std::string kind;  // diffusers, safetensors, ckpt or gguf
  // The name without its extension, as in PNG parameters ("Model: sd15").
  std::string stem() const;
};

// True for a name that stays inside the folder: not empty, no '/', '\\', "..", NUL, nor a
// leading '.'.
bool is_safe_model_name(const std::string& name);

class ModelDirectory {
 public:
  explicit ModelDirectory(std::string dir);  // throws if dir is not a folder

  // The models now in the folder, sorted by name (read anew on each call).
  std::vector<ModelEntry> list() const;
  // The model a request names: its file name, its name without extension, or an A1111 title
  // ("name [hash]"). Throws ApiError 400 for a name that leaves the folder, 404 if absent.
  ModelEntry find(const std::string& name) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// The LoRA files of a folder and the folders below it (symbolic links followed, each folder
// once, 16 deep at most): NAME.safetensors paths relative to the folder, sorted. Unreadable
// entries are skipped.
std::vector<std::string> list_lora_files(const std::string& dir);

}  // namespace diffuse::server
