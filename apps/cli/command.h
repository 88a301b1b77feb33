// Sub-command registry of the `diffuse` CLI. Each cmd_*.cpp registers itself with a
// static Command object; main() builds the CLI11 app from the registry.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace diffuse::cli {

struct Command {
  // setup() declares the options on `sub` and returns the action to run once parsed.
  using Setup = std::function<std::function<int()>(CLI::App& sub)>;
  Command(const char* name, const char* help, Setup setup);
};

struct CommandEntry {
  std::string name, help;
  Command::Setup setup;
};
std::vector<CommandEntry>& command_registry();

}  // namespace diffuse::cli
