// amct: command-line tools over ONNX models and record files (no torch needed).
#include <cstdio>

int main() {
  std::puts("usage: amct <command>");
  return 0;
}
