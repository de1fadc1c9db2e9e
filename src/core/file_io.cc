#include "amct/file_io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include "amct/error.h"

namespace amct {
namespace fs = std::filesystem;

std::string read_file(const std::string& path, std::string_view what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(ErrorCode::kNotFound, std::string(what) + " '" + path + "' does not exist");
  if (fs::is_directory(path, ec)) invalid(std::string(what) + " '" + path + "' is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kIoError, std::string(what) + " '" + path + "' cannot be read: " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void check_output_file_name(const std::string& path, std::string_view what) {
  if (path.empty()) invalid(std::string(what) + ": an empty string is not a valid file name");
  if (path.back() == '/') invalid(std::string(what) + " '" + path + "' must name a file, not a directory");
  const std::string base = fs::path(path).filename().string();
  if (base.empty() || base.size() > 254) invalid(std::string(what) + " '" + path + "': the file name must have 1 to 254 characters");
}

void write_file_atomic(const std::string& path, std::string_view data, std::string_view what) {
  check_output_file_name(path, what);
  const fs::path target = fs::absolute(path);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) fail(ErrorCode::kIoError, std::string(what) + ": cannot create directory '" + target.parent_path().string() + "': " + ec.message());
  if (fs::is_directory(target, ec)) invalid(std::string(what) + " '" + path + "' is a directory, expected a file");

  // mkstemp replaces the six trailing X with a unique suffix.
  std::string tmp = (target.parent_path() / ("." + target.filename().string() + ".tmp" + std::string(6, 'X'))).string();
  const int fd = mkstemp(tmp.data());
  if (fd < 0) fail(ErrorCode::kIoError, std::string(what) + ": cannot write to '" + target.parent_path().string() + "': " + std::strerror(errno));
  size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      std::remove(tmp.c_str());
      fail(ErrorCode::kIoError, std::string(what) + ": writing '" + path + "' failed: " + std::strerror(err));
    }
    written += static_cast<size_t>(n);
  }
  ::fchmod(fd, 0640);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::remove(tmp.c_str());
    fail(ErrorCode::kIoError, std::string(what) + ": writing '" + path + "' failed: " + std::strerror(errno));
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail(ErrorCode::kIoError, std::string(what) + ": cannot replace '" + path + "': " + ec.message());
  }
}

}  // namespace amct
