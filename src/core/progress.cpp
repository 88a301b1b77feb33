#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace diffuse {

std::string format_rate(double s) {
  char buf[32];
  if (s <= 0) return "?s/it";
  if (s >= 1.0)
    std::snprintf(buf, sizeof buf, "%.2fs/it", s);
  else
    std::snprintf(buf, sizeof buf, "%.2fit/s", 1.0 / s);
  return buf;
}

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(isatty(STDERR_FILENO)) {
  start_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  finish();
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& extra) {
  if (!enabled_ || finished_) return;
  const double el = elapsed_s();
  const double per = done > 0 ? el / double(done) : 0;
  const double eta = per * double(total_ - done);
  char tail[128];
  std::snprintf(tail, sizeof tail, "%lld/%lld [%.1fs<%.1fs, %s]", (long long)done,
                (long long)total_, el, eta, format_rate(per).c_str());
  if (tty_) {
    const int width = 30;
    const int filled = total_ > 0 ? int(width * done / total_) : width;
    std::string bar(size_t(filled), '#');
    bar.resize(size_t(width), '.');
    std::fprintf(stderr, "\r%s |%s| %s%s%s\x1b[K", label_.c_str(), bar.c_str(), tail,
                 extra.empty() ? "" : " ", extra.c_str());
    std::fflush(stderr);
  } else if (!printed_ || done >= total_ || el - last_line_s_ >= kLineInterval) {
    // A log gets the first line, the last, and one every kLineInterval seconds between.
    std::fprintf(stderr, "%s %s%s%s\n", label_.c_str(), tail, extra.empty() ? "" : " ",
                 extra.c_str());
    printed_ = true;
    last_line_s_ = el;
  }
  if (done >= total_) finish();
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace diffuse
