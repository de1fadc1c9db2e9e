// amct compare: the parity check of amct_pytorch.compare. Running the models
// needs ONNX Runtime, which the Python package drives, so this command hands
// its arguments to `python3 -m amct_pytorch.compare` ($AMCT_PYTHON overrides
// the interpreter).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "amct/error.h"
#include "commands.h"

namespace amct::cli {
namespace {

constexpr char kUsage[] =
    "usage: amct compare --fake-quant FQ.onnx --qdq QDQ.onnx [--float FLOAT.onnx]\n"
    "                    [--input NAME=FILE.npy ...] [--batch N] [--json OUT.json] [--no-layers]\n"
    "\n"
    "Runs the fake-quant and QDQ models of save-model (and optionally the float\n"
    "model) in ONNX Runtime on the same inputs and prints, per model output and\n"
    "per quantized layer, cosine similarity, SQNR (dB), max abs error and the\n"
    "share of elements within one 8-bit step ((max - min) / 255 of the\n"
    "reference). Without --input, standard-normal inputs are used (dynamic axes\n"
    "take --batch). Needs the amct_pytorch package and onnxruntime: it runs\n"
    "`python3 -m amct_pytorch.compare` ($AMCT_PYTHON picks the interpreter).\n";

int run(std::span<const std::string> args) {
  for (const auto& arg : args)
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  const char* python = std::getenv("AMCT_PYTHON");
  // `-c` rather than `-m`: the package imports amct_pytorch.compare itself,
  // and running an already-imported module with -m makes Python warn.
  std::vector<std::string> command = {python && *python ? python : "python3", "-c",
                                      "import sys; from amct_pytorch.compare import main; sys.exit(main())"};
  command.insert(command.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& part : command) argv.push_back(part.data());
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  fail(ErrorCode::kRuntime, "compare: cannot run '" + command[0] + "': " + std::strerror(errno) +
                                " (set AMCT_PYTHON to a Python with amct_pytorch and onnxruntime)");
}

}  // namespace

const Command kCompareCommand = {"compare", "parity of the fake-quant and QDQ models (runs amct_pytorch.compare)",
                                 kUsage, run};

}  // namespace amct::cli
