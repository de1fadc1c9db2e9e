// ModelEvaluator's binary batches: argument parsing, file order and size checks.
#include "amct/bin_data.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "amct/error.h"

namespace amct {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("amct_bin_data_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void write(const std::string& path, size_t bytes) { std::ofstream(path, std::ios::binary) << std::string(bytes, 'x'); }

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

TEST(BinData, ParsesOneEntryPerInput) {
  const std::string a = fresh_dir("parse_a");
  const std::string b = fresh_dir("parse_b");
  const auto inputs = parse_bin_inputs("image:0:2,3,4,4;ids:2,7", a + ";" + b, "float32;int64");
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs[0].name, "image:0");
  EXPECT_EQ(inputs[0].dims, (std::vector<int64_t>{2, 3, 4, 4}));
  EXPECT_EQ(inputs[0].dtype, "float32");
  EXPECT_EQ(inputs[0].directory, a);
  EXPECT_EQ(inputs[1].name, "ids");
  EXPECT_EQ(inputs[1].dtype, "int64");
}

TEST(BinData, ArgumentErrorsNameTheArgument) {
  const std::string a = fresh_dir("errors");
  EXPECT_EQ(error_of([&] { parse_bin_inputs("image", a, "float32"); }),
            "Invalid input_shape. Input name and shapes of each input node should be ':' split. E.g.: "
            "input_name1:n1,c1,h1,w1 or input_name2:0:n1,c1,h1,w1 (got 'image')");
  EXPECT_EQ(error_of([&] { parse_bin_inputs("image:2,x", a, "float32"); }),
            "input_shape: dimension 'x' of 'image:2,x' is not a positive integer");
  EXPECT_EQ(error_of([&] { parse_bin_inputs("image:2,3", a + ";" + a, "float32"); }),
            "input_shape names 1 inputs, data_dir 2 directories and data_types 1 types; expected one of each per "
            "input");
  EXPECT_EQ(error_of([&] { parse_bin_inputs("image:2,3", a, "complex64"); }),
            "data_types: Unsupported data type[complex64]!");
  EXPECT_EQ(error_of([&] { parse_bin_inputs("image:2,3", a + "/absent", "float32"); }),
            "data_dir: '" + a + "/absent' (input image) is not a directory");
}

TEST(BinData, BatchesInFileNameOrderAndSizeChecked) {
  const std::string a = fresh_dir("batches");
  for (const char* name : {"b.bin", "a.bin", "c.bin"}) write(a + "/" + name, 24);
  const auto inputs = parse_bin_inputs("x:2,3", a, "float32");
  const auto files = bin_batch_files(inputs, 2);
  EXPECT_EQ(files, (std::vector<std::vector<std::string>>{{a + "/a.bin", a + "/b.bin"}}));
  EXPECT_EQ(bin_batch_files(inputs, -1)[0].size(), 3u);
  EXPECT_EQ(error_of([&] { bin_batch_files(inputs, 4); }),
            "The number of given data batches is not enough to run calibration with the given batch_num. Total "
            "batches found: 3, but trying to load: 4 (data_dir '" + a + "')");
  EXPECT_EQ(read_bin_batch(a + "/a.bin", inputs[0]).size(), 24u);
  write(a + "/c.bin", 20);
  EXPECT_EQ(error_of([&] { read_bin_batch(a + "/c.bin", inputs[0]); }),
            "data file '" + a + "/c.bin' of input x has 20 bytes; its shape and data type need 24");
}

}  // namespace
}  // namespace amct
