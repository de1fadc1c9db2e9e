// libFuzzer target: the external data reader. The fuzzed bytes are written
// as a model file into a sandbox directory holding two data files, a
// subdirectory and a symbolic link to a file outside it; load_onnx_model
// then resolves the model's external references. Besides ending in a clear
// error, no tensor may ever receive bytes of the file outside the directory
// (0xA5 bytes, which no file inside holds).
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "fuzz_support.h"

namespace {
namespace fs = std::filesystem;

constexpr char kSecretByte = static_cast<char>(0xA5);

const std::string& model_path() {
  static const std::string path = [] {
    const fs::path root = fs::temp_directory_path() / ("amct_fuzz_external_" + std::to_string(::getpid()));
    fs::create_directories(root / "model" / "sub");
    std::string weights(64, '\0');
    for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<char>(i);
    std::ofstream(root / "model" / "w.bin", std::ios::binary) << weights;
    std::ofstream(root / "model" / "sub" / "v.bin", std::ios::binary) << weights.substr(0, 16);
    std::ofstream(root / "secret.bin", std::ios::binary) << std::string(64, kSecretByte);
    std::error_code ec;
    fs::create_symlink("../secret.bin", root / "model" / "link.bin", ec);
    return (root / "model" / "m.onnx").string();
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = amct::fuzz::as_string(data, size);
  onnx::ModelProto written;
  if (!written.ParseFromString(bytes)) return 0;
  std::ofstream(model_path(), std::ios::binary | std::ios::trunc) << bytes;
  amct::fuzz::expect_clear_error([&] {
    const onnx::ModelProto loaded = amct::load_onnx_model(model_path());
    // Initializers keep their order: those external in the file were read.
    for (int i = 0; i < written.graph().initializer_size() && i < loaded.graph().initializer_size(); ++i) {
      if (written.graph().initializer(i).data_location() != onnx::TensorProto::EXTERNAL) continue;
      if (loaded.graph().initializer(i).raw_data().find(kSecretByte) != std::string::npos) {
        std::fprintf(stderr, "initializer %d received bytes from outside the model's directory\n", i);
        std::abort();
      }
    }
  });
  return 0;
}
