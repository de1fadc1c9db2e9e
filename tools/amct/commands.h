// Subcommands of the amct tool. Each returns the process exit status and
// throws UsageError for a bad command line.
#pragma once

#include <span>
#include <stdexcept>
#include <string>

namespace amct::cli {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Command {
  const char* name;
  const char* summary;
  const char* usage;  // full help text
  int (*run)(std::span<const std::string> args);
};

extern const Command kSaveModelCommand;
extern const Command kCompareCommand;

}  // namespace amct::cli
