#include "ops/profile.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>

namespace diffuse::ops {

namespace {

std::atomic<bool> g_on{false};

struct Table {
  std::mutex mu;
  std::map<std::string, ProfileEntry> rows;
};

Table& table() {
  static Table* t = new Table();
  return *t;
}

}  // namespace

void set_profiling(bool on) {
  g_on.store(on, std::memory_order_relaxed);
}
bool profiling() {
  return g_on.load(std::memory_order_relaxed);
}

void profile_reset() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  t.rows.clear();
}

std::vector<ProfileEntry> profile_entries() {
  Table& t = table();
  std::vector<ProfileEntry> out;
  {
    std::lock_guard<std::mutex> lock(t.mu);
    for (auto& [k, v] : t.rows) out.push_back(v);
  }
  std::sort(out.begin(), out.end(),
            [](const ProfileEntry& a, const ProfileEntry& b) { return a.wall_s > b.wall_s; });
  return out;
}

std::string profile_table() {
  auto rows = profile_entries();
  double total = 0;
  for (auto& r : rows)
    if (r.label.find('.') == std::string::npos) total += r.wall_s;  // phases are nested
  std::string s;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-28s %7s %9s %6s %9s %8s\n", "op", "calls", "wall_s", "share",
                "cpu_s", "GFLOP/s");
  s += buf;
  for (auto& r : rows) {
    std::snprintf(buf, sizeof buf, "%-28s %7lld %9.3f %5.1f%% %9.3f %8.1f\n", r.label.c_str(),
                  (long long)r.calls, r.wall_s, total > 0 ? 100.0 * r.wall_s / total : 0.0, r.cpu_s,
                  r.flops > 0 && r.wall_s > 0 ? r.flops / r.wall_s * 1e-9 : 0.0);
    s += buf;
  }
  return s;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

void ProfileScope::start(const char* label, double flops) {
  active_ = true;
  label_ = label;
  flops_ = flops;
  cpu0_ = process_cpu_seconds();
  t0_ = std::chrono::steady_clock::now();
}

void ProfileScope::stop() {
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const double cpu = process_cpu_seconds() - cpu0_;
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  ProfileEntry& e = t.rows[label_];
  e.label = label_;
  e.calls += 1;
  e.wall_s += wall;
  e.cpu_s += cpu;
  e.flops += flops_;
}

}  // namespace diffuse::ops
