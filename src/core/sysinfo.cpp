#include "core/sysinfo.h"

#include <fstream>
#include <string>

namespace diffuse {

double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return -1;
}

}  // namespace diffuse
