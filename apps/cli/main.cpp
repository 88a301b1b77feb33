// The `diffuse` command: one binary, one sub-command per job.
#include <algorithm>
#include <cstdio>
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

}  // namespace diffuse::cli

int main(int argc, char** argv) {
  using namespace diffuse::cli;
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
