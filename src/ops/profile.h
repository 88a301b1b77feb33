// A per-op profiler for finding where time goes: when enabled, every op dispatch (and some
// kernel phases, e.g. conv2d's reorders) adds its wall time and this process's CPU time to a
// table keyed by a label. Disabled, a scope costs one relaxed atomic load.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace diffuse::ops {

struct ProfileEntry {
  std::string label;
  int64_t calls = 0;
  double wall_s = 0, cpu_s = 0;
  double flops = 0;  // where the op knows its arithmetic (products)
};

void set_profiling(bool on);
bool profiling();
void profile_reset();
std::vector<ProfileEntry> profile_entries();  // largest wall time first
// The table as text: label, calls, wall seconds, share, CPU seconds, GFLOP/s.
std::string profile_table();

// Process CPU time in seconds (all threads).
double process_cpu_seconds();

class ProfileScope {
 public:
  explicit ProfileScope(const char* label, double flops = 0) {
    if (profiling()) start(label, flops);
  }
  explicit ProfileScope(const std::string& label, double flops = 0) {
    if (profiling()) start(label.c_str(), flops);
  }
  ~ProfileScope() {
    if (active_) stop();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  void start(const char* label, double flops);
  void stop();
  bool active_ = false;
  std::string label_;
  double flops_ = 0, cpu0_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace diffuse::ops
