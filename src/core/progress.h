// Progress of long work on stderr: a bar with rate and ETA on a terminal, plain lines
// otherwise (logs, pipes: the first, the last and one every 5 seconds), and silence when
// disabled.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace diffuse {

class Progress {
 public:
  // total: number of steps; label: what is counted ("step", "image").
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  // Marks `done` steps complete; `extra` is shown after the rate (e.g. "loss 0.12").
  void update(int64_t done, const std::string& extra = "");
  void finish();
  double elapsed_s() const;

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_;
  // Plain lines (not a terminal): whether one was written, and when (seconds since start).
  static constexpr double kLineInterval = 5.0;
  bool printed_ = false;
  double last_line_s_ = 0;
};

// Seconds per step as "12.3s/it", or steps per second "4.56it/s" when faster than 1 it/s.
std::string format_rate(double seconds_per_step);

}  // namespace diffuse
