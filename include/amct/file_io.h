// File helpers: every output goes to a temporary file in the same directory
// and is renamed over the target, so a failure never leaves a truncated file.
// Outputs that belong together (the three models of save_model; the modified
// ONNX, record and sidecar of quantize_model) are staged and committed as one
// FileSet, so a call replaces all of them or none.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace amct {

// Reads a whole file; throws kNotFound / kIoError naming `what` and the path.
std::string read_file(const std::string& path, std::string_view what);

// Writes `data` to `path` atomically, creating missing parent directories
// (a FileSet of one file).
void write_file_atomic(const std::string& path, std::string_view data, std::string_view what);

// AMCT's file-name rule: not empty, not ending in '/', base name of 1..254 chars.
void check_output_file_name(const std::string& path, std::string_view what);

// Files replaced together. stage() writes each one's data to a temporary
// file beside its target (creating missing directories) and leaves the
// target alone; commit() renames them all over their targets. commit() holds
// an advisory lock (flock) on every target directory while it renames, so two
// processes committing to the same files never interleave: the files end up
// all from one commit. If a rename fails, the targets already replaced are
// restored from hard-link backups taken just before, so on any error the
// targets are as they were. Temporaries not committed are removed by the
// destructor. A process killed in the middle of commit() can still leave a
// mix; nothing short of a directory swap avoids that.
class FileSet {
 public:
  FileSet() = default;
  FileSet(const FileSet&) = delete;
  FileSet& operator=(const FileSet&) = delete;
  ~FileSet();

  void stage(const std::string& path, std::string_view data, std::string_view what);
  // As stage(), with the file's data being `pieces` one after another (the
  // weights of an external data file are written from where they lie).
  void stage(const std::string& path, std::span<const std::string_view> pieces, std::string_view what);
  // As stage(), with `write` writing the data to the open temporary file
  // (a model serialized straight to the file, never held as one string);
  // it throws on failure.
  void stage(const std::string& path, const std::function<void(int fd)>& write, std::string_view what);
  void commit();

 private:
  struct Staged {
    std::string target;  // absolute
    std::string temp;
    std::string what;
  };
  std::vector<Staged> staged_;
};

}  // namespace amct
