// amct: command-line tools over ONNX models and record files (no torch needed).
// Exit status: 0 success, 1 failure (bad files, bad record ...), 2 bad usage.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "amct/error.h"
#include "commands.h"

namespace {

using amct::cli::Command;

const Command* const kCommands[] = {&amct::cli::kSaveModelCommand, &amct::cli::kCompareCommand};

std::string general_usage() {
  std::string text =
      "usage: amct <command> [options]\n"
      "       amct <command> --help\n"
      "\n"
      "commands:\n";
  for (const Command* command : kCommands) text += "  " + std::string(command->name) + "  " + command->summary + "\n";
  return text;
}

const Command* find_command(const std::string& name) {
  for (const Command* command : kCommands)
    if (name == command->name) return command;
  return nullptr;
}

int report(const std::string& message, int status) {
  std::fprintf(stderr, "amct: error: %s\n", message.c_str());
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(general_usage().c_str(), stderr);
    return amct::cli::kExitUsage;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(general_usage().c_str(), stdout);
    return 0;
  }
  const Command* command = find_command(args[0]);
  if (!command) return report("unknown command '" + args[0] + "' (see amct --help)", amct::cli::kExitUsage);
  try {
    return command->run(std::span<const std::string>(args).subspan(1));
  } catch (const amct::cli::UsageError& e) {
    // The synopsis only; --help prints the rest.
    const std::string usage = command->usage;
    std::fputs(usage.substr(0, usage.find("\n\n") + 1).c_str(), stderr);
    return report(e.what(), amct::cli::kExitUsage);
  } catch (const amct::Error& e) {
    return report(e.what(), amct::cli::kExitFailure);
  } catch (const std::exception& e) {
    return report(std::string("internal error: ") + e.what(), amct::cli::kExitFailure);
  }
}
