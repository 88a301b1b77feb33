#include "io/folder_path.h"

#include "core/error.h"

namespace diffuse::io {

std::filesystem::path file_in_folder(const std::filesystem::path& dir, const std::string& name,
                                     const std::string& what) {
  const std::filesystem::path p(name);
  bool inside = !name.empty() && !p.has_root_path() && name.find('\0') == std::string::npos;
  for (const auto& part : p) inside &= part != "..";
  DF_CHECK(inside, what, " names '", name, "', which is not a file inside the folder ",
           dir.string());
  return dir / p;
}

}  // namespace diffuse::io
