#include "amct/file_io.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <fcntl.h>
#include <sys/file.h>
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

namespace {

// Exclusive advisory locks on directories, released when destroyed.
class DirectoryLocks {
 public:
  explicit DirectoryLocks(std::vector<std::string> dirs) {
    std::sort(dirs.begin(), dirs.end());  // one order for every process: no deadlock
    dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
    for (const auto& dir : dirs) {
      const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) continue;  // the rename below reports what is wrong with the directory
      fds_.push_back(fd);
      // A file system without flock (some network mounts) leaves the commit
      // unlocked: still all-or-nothing for this process, as before locking.
      while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
      }
    }
  }
  DirectoryLocks(const DirectoryLocks&) = delete;
  DirectoryLocks& operator=(const DirectoryLocks&) = delete;
  ~DirectoryLocks() {
    for (int fd : fds_) ::close(fd);
  }

 private:
  std::vector<int> fds_;
};

// A previous file to put back if the commit fails. A directory in the way
// needs none: the rename over it fails and says so.
bool has_previous_file(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
}

}  // namespace

FileSet::~FileSet() {
  for (const auto& file : staged_)
    if (!file.temp.empty()) std::remove(file.temp.c_str());
}

void FileSet::stage(const std::string& path, std::string_view data, std::string_view what) {
  stage(path, std::span<const std::string_view>(&data, 1), what);
}

void FileSet::stage(const std::string& path, std::span<const std::string_view> pieces, std::string_view what) {
  stage(
      path,
      [&](int fd) {
        for (const std::string_view data : pieces) {
          size_t written = 0;
          while (written < data.size()) {
            const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
              fail(ErrorCode::kIoError, std::string(what) + ": writing '" + path + "' failed: " + std::strerror(errno));
            written += static_cast<size_t>(n);
          }
        }
      },
      what);
}

void FileSet::stage(const std::string& path, const std::function<void(int fd)>& write, std::string_view what) {
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
  try {
    write(fd);
  } catch (...) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw;
  }
  ::fchmod(fd, 0640);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::remove(tmp.c_str());
    fail(ErrorCode::kIoError, std::string(what) + ": writing '" + path + "' failed: " + std::strerror(errno));
  }
  staged_.push_back({target.string(), std::move(tmp), std::string(what)});
}

void FileSet::commit() {
  std::vector<std::string> dirs;
  for (const auto& file : staged_) dirs.push_back(fs::path(file.target).parent_path().string());
  const DirectoryLocks locks(std::move(dirs));

  // backups[i]: the hard link to target i's previous file ("" if it had none).
  std::vector<std::string> backups;
  // Puts the replaced targets back and drops the set: a failed commit
  // leaves neither new files nor temporaries.
  const auto roll_back = [&] {
    for (size_t i = backups.size(); i-- > 0;) {
      if (backups[i].empty()) {
        std::remove(staged_[i].target.c_str());
      } else if (std::rename(backups[i].c_str(), staged_[i].target.c_str()) != 0) {
        std::remove(backups[i].c_str());
      }
    }
    for (const auto& file : staged_)
      if (!file.temp.empty()) std::remove(file.temp.c_str());
    staged_.clear();
  };
  for (auto& file : staged_) {
    std::string backup;
    if (has_previous_file(file.target)) {
      backup = file.temp + ".old";
      std::error_code ec;
      // A file system without hard links gets a copy instead.
      if (::link(file.target.c_str(), backup.c_str()) != 0) fs::copy_file(file.target, backup, ec);
      if (ec) {
        // The message first: roll_back() drops `file`.
        const std::string message = file.what + ": cannot keep a copy of '" + file.target + "' while replacing it: " +
                                    ec.message() + "; no file of this call was replaced";
        roll_back();
        fail(ErrorCode::kIoError, message);
      }
    }
    if (std::rename(file.temp.c_str(), file.target.c_str()) != 0) {
      const std::string message = file.what + ": cannot replace '" + file.target + "': " + std::strerror(errno) +
                                  "; no file of this call was replaced";
      if (!backup.empty()) std::remove(backup.c_str());
      roll_back();
      fail(ErrorCode::kIoError, message);
    }
    // Its name is free again; another process's mkstemp may take it.
    file.temp.clear();
    backups.push_back(std::move(backup));
  }
  for (const auto& backup : backups)
    if (!backup.empty()) std::remove(backup.c_str());
  staged_.clear();
}

void write_file_atomic(const std::string& path, std::string_view data, std::string_view what) {
  FileSet files;
  files.stage(path, data, what);
  files.commit();
}

}  // namespace amct
