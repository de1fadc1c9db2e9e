// Errors a user can cause (bad file, bad config, unsupported layer) are thrown
// as amct::Error. The code decides which Python exception the binding raises;
// the message names the file, layer or field and what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace amct {

enum class ErrorCode {
  kInvalidArgument,  // a value is out of range or malformed -> ValueError
  kTypeError,        // a value has the wrong type -> TypeError
  kNotFound,         // a file or layer does not exist -> FileNotFoundError / ValueError
  kIoError,          // a file cannot be read or written -> OSError
  kRuntime,          // the flow is in the wrong state -> RuntimeError
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }
[[noreturn]] inline void invalid(const std::string& message) { fail(ErrorCode::kInvalidArgument, message); }

}  // namespace amct
