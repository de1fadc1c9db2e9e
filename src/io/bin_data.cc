#include "amct/bin_data.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>

#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/text_check.h"

namespace amct {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

// numpy's dtype names and sizes, as AMCT's loader accepts them.
const std::map<std::string, size_t>& dtype_sizes() {
  static const std::map<std::string, size_t> sizes = {
      {"float64", 8}, {"float32", 4}, {"float16", 2}, {"int8", 1},   {"int16", 2},  {"int32", 4},
      {"int64", 8},   {"uint8", 1},   {"uint16", 2},  {"uint32", 4}, {"uint64", 8}, {"bool", 1}};
  return sizes;
}

int64_t parse_dim(const std::string& text, const std::string& item) {
  size_t used = 0;
  int64_t value = -1;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value <= 0)
    invalid("input_shape: dimension '" + shorten_for_message(text) + "' of '" + shorten_for_message(item) +
            "' is not a positive integer");
  return value;
}

}  // namespace

std::vector<BinInput> parse_bin_inputs(const std::string& input_shape, const std::string& data_dir,
                                       const std::string& data_types) {
  std::vector<BinInput> inputs;
  for (const std::string& item : split(input_shape, ';')) {
    const size_t colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == item.size())
      invalid("Invalid input_shape. Input name and shapes of each input node should be ':' split. E.g.: "
              "input_name1:n1,c1,h1,w1 or input_name2:0:n1,c1,h1,w1 (got '" + shorten_for_message(item) + "')");
    BinInput input;
    input.name = item.substr(0, colon);
    for (const std::string& dim : split(item.substr(colon + 1), ',')) input.dims.push_back(parse_dim(dim, item));
    inputs.push_back(std::move(input));
  }
  const std::vector<std::string> dirs = split(data_dir, ';');
  const std::vector<std::string> types = split(data_types, ';');
  if (dirs.size() != inputs.size() || types.size() != inputs.size())
    invalid("input_shape names " + std::to_string(inputs.size()) + " inputs, data_dir " +
            std::to_string(dirs.size()) + " directories and data_types " + std::to_string(types.size()) +
            " types; expected one of each per input");
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!dtype_sizes().count(types[i]))
      fail(ErrorCode::kTypeError, "data_types: Unsupported data type[" + shorten_for_message(types[i]) + "]!");
    inputs[i].dtype = types[i];
    std::error_code error;
    const fs::path dir = fs::absolute(dirs[i], error);
    if (error || !fs::is_directory(dir, error))
      fail(ErrorCode::kNotFound, "data_dir: '" + dirs[i] + "' (input " + inputs[i].name + ") is not a directory");
    inputs[i].directory = dir.lexically_normal().string();
  }
  return inputs;
}

std::vector<std::vector<std::string>> bin_batch_files(const std::vector<BinInput>& inputs, int64_t count) {
  std::vector<std::vector<std::string>> files;
  for (const BinInput& input : inputs) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(input.directory))
      if (entry.is_regular_file()) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    if (count < 0) count = static_cast<int64_t>(names.size());
    if (static_cast<int64_t>(names.size()) < count)
      fail(ErrorCode::kRuntime, "The number of given data batches is not enough to run calibration with the given "
                                "batch_num. Total batches found: " + std::to_string(names.size()) +
                                    ", but trying to load: " + std::to_string(count) + " (data_dir '" +
                                    input.directory + "')");
    names.resize(static_cast<size_t>(count));
    std::vector<std::string> paths;
    for (const auto& name : names) paths.push_back((fs::path(input.directory) / name).string());
    files.push_back(std::move(paths));
  }
  return files;
}

std::string read_bin_batch(const std::string& path, const BinInput& input) {
  std::string data = read_file(path, "data file of input " + input.name);
  uint64_t expected = dtype_sizes().at(input.dtype);
  for (int64_t d : input.dims) {
    // A product beyond any file size: no file can match it.
    if (expected > UINT64_MAX / static_cast<uint64_t>(d))
      invalid("input_shape of input " + input.name + " has more elements than any file can hold");
    expected *= static_cast<uint64_t>(d);
  }
  if (data.size() != expected)
    invalid("data file '" + path + "' of input " + input.name + " has " + std::to_string(data.size()) +
            " bytes; its shape and data type need " + std::to_string(expected));
  return data;
}

}  // namespace amct
