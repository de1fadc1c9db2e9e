// FileSet: the outputs of one call are replaced together or not at all.
#include "amct/file_io.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "amct/error.h"

namespace amct {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("amct_file_set_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Names in `dir` other than `expected`: temporaries or backups left behind.
std::vector<std::string> leftovers(const std::string& dir, const std::vector<std::string>& expected) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (std::find(expected.begin(), expected.end(), name) == expected.end()) out.push_back(name);
  }
  return out;
}

TEST(FileSet, CommitReplacesEveryFile) {
  const std::string dir = fresh_dir("commit");
  write_file_atomic(dir + "/a", "old a", "test");
  FileSet files;
  files.stage(dir + "/a", "new a", "test");
  files.stage(dir + "/b", "new b", "test");
  EXPECT_EQ(contents(dir + "/a"), "old a");  // staging leaves the targets alone
  EXPECT_FALSE(fs::exists(dir + "/b"));
  files.commit();
  EXPECT_EQ(contents(dir + "/a"), "new a");
  EXPECT_EQ(contents(dir + "/b"), "new b");
  EXPECT_EQ(leftovers(dir, {"a", "b"}), std::vector<std::string>{});
}

TEST(FileSet, UncommittedTemporariesAreRemoved) {
  const std::string dir = fresh_dir("uncommitted");
  {
    FileSet files;
    files.stage(dir + "/a", "new a", "test");
  }
  EXPECT_EQ(leftovers(dir, {}), std::vector<std::string>{});
}

// A rename that fails half way (the second target became a directory after
// staging) puts the first target's previous file back.
TEST(FileSet, FailedRenameRestoresTheFilesAlreadyReplaced) {
  const std::string dir = fresh_dir("rollback");
  write_file_atomic(dir + "/a", "old a", "test");
  FileSet files;
  files.stage(dir + "/a", "new a", "first output");
  files.stage(dir + "/b", "new b", "second output");
  fs::create_directories(dir + "/b/inside");
  try {
    files.commit();
    FAIL() << "commit over a directory succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIoError);
    const std::string message = e.what();
    EXPECT_NE(message.find("second output: cannot replace '" + dir + "/b'"), std::string::npos) << message;
    EXPECT_NE(message.find("no file of this call was replaced"), std::string::npos) << message;
  }
  EXPECT_EQ(contents(dir + "/a"), "old a");
  EXPECT_TRUE(fs::is_directory(dir + "/b/inside"));
  EXPECT_EQ(leftovers(dir, {"a", "b"}), std::vector<std::string>{});
}

// A target that did not exist before a failed commit does not exist after it.
TEST(FileSet, FailedRenameRemovesNewFiles) {
  const std::string dir = fresh_dir("rollback_new");
  FileSet files;
  files.stage(dir + "/a", "new a", "test");
  files.stage(dir + "/b", "new b", "test");
  fs::create_directories(dir + "/b/inside");
  EXPECT_THROW(files.commit(), Error);
  EXPECT_FALSE(fs::exists(dir + "/a"));
  EXPECT_EQ(leftovers(dir, {"b"}), std::vector<std::string>{});
}

TEST(FileSet, StagingOverADirectoryNamesIt) {
  const std::string dir = fresh_dir("stage_dir");
  fs::create_directories(dir + "/b");
  FileSet files;
  try {
    files.stage(dir + "/b", "x", "fake-quant model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fake-quant model '" + dir + "/b' is a directory"), std::string::npos)
        << e.what();
  }
}

// Threads committing two-file sets to the same targets: commits are
// serialized by the directory lock, so the pair left at the end comes from
// one commit.
TEST(FileSet, ConcurrentCommitsLeaveOneSet) {
  const std::string dir = fresh_dir("concurrent");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        FileSet files;
        const std::string tag = std::to_string(t) + "." + std::to_string(round);
        files.stage(dir + "/a", tag, "test");
        files.stage(dir + "/b", tag, "test");
        files.commit();
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(contents(dir + "/a"), contents(dir + "/b"));
  EXPECT_EQ(leftovers(dir, {"a", "b"}), std::vector<std::string>{});
}

}  // namespace
}  // namespace amct
