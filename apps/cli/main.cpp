// The `diffuse` command: one binary, one sub-command per job.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "apps/cli/command.h"
#include "core/error.h"

namespace diffuse::cli {

std::vector<CommandEntry>& command_registry() {
  static std::vector<CommandEntry> r;
  return r;
}

Command::Command(const char* name, const char* help, Setup setup) {
  command_registry().push_back({name, help, std::move(setup)});
}

namespace {

// OpenMP's idle threads spin while they wait for work unless told otherwise, and libgomp reads
// OMP_WAIT_POLICY once, as it loads, before main. Spinning gains nothing measurable on an idle
// machine (a 512x512 UNet step: 5.24 s spinning, 5.26 s passive) and costs much as soon as
// another process wants the cores (two runs side by side at 256: 3.4 to 4.0 s per step
// spinning, 2.0 s passive). So unless the user chose a policy, the process starts again once,
// the same (same pid, arguments and environment), with OMP_WAIT_POLICY=passive.
void let_waiting_threads_sleep(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then go on spinning
}

}  // namespace

}  // namespace diffuse::cli

int main(int argc, char** argv) {
  using namespace diffuse::cli;
  let_waiting_threads_sleep(argv);
  CLI::App app{"diffuse: Stable Diffusion in C++ (inference and training)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "diffuse 0.1.0");
  auto& reg = command_registry();
  std::sort(reg.begin(), reg.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions;
  for (auto& c : reg) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    actions.emplace_back(sub, c.setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : actions)
      if (sub->parsed()) return run();
  } catch (const diffuse::Error& e) {
    std::fprintf(stderr, "diffuse: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "diffuse: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "diffuse: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
