// The data of AMCT's ModelEvaluator (docs/amct-reference.md#modelevaluator): one directory of raw
// binary files per model input, read in file-name order, each file one batch
// of a fixed shape and dtype.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace amct {

struct BinInput {
  std::string name;
  std::vector<int64_t> dims;
  std::string dtype;      // numpy's name: "float32", "int64", ...
  std::string directory;  // absolute
};

// Parses ModelEvaluator's arguments: input_shape "name1:n,c,h,w;name2:n,l"
// (a name may itself contain ':'), data_dir "dir1;dir2" and data_types
// "float32;int64", one entry per input. Errors name the argument.
std::vector<BinInput> parse_bin_inputs(const std::string& input_shape, const std::string& data_dir,
                                       const std::string& data_types);

// For each input, the paths of the first `count` files of its directory in
// file-name order (count < 0: as many as the first directory holds). Throws
// kRuntime when a directory holds fewer.
std::vector<std::vector<std::string>> bin_batch_files(const std::vector<BinInput>& inputs, int64_t count);

// The bytes of one batch; throws kInvalidArgument naming the file when its
// size is not the input's element count times the dtype's size.
std::string read_bin_batch(const std::string& path, const BinInput& input);

}  // namespace amct
