#include "amct/calib/ada_matmul.h"

#include <algorithm>

#include "amct/calib/parallel_slices.h"

namespace amct {
namespace {

// Below this many multiply-adds a second thread costs more than it saves.
constexpr int64_t kMinThreadedWork = int64_t{1} << 21;
constexpr int64_t kRowBlock = 4;

// Rows [begin, end) of z. Each pass over a row of x updates four rows of z,
// so x is read from cache once per four output rows; the inner loop over n
// is contiguous and vectorizes (AVX2 where the CPU has it).
__attribute__((target_clones("avx2", "default"), optimize("O3")))
void matmul_rows(const float* a, const float* x, float* z, int64_t begin, int64_t end, int64_t k, int64_t n) {
  int64_t i = begin;
  for (; i + kRowBlock <= end; i += kRowBlock) {
    float* __restrict z0 = z + i * n;
    float* __restrict z1 = z0 + n;
    float* __restrict z2 = z1 + n;
    float* __restrict z3 = z2 + n;
    std::fill(z0, z0 + kRowBlock * n, 0.0f);
    for (int64_t p = 0; p < k; ++p) {
      const float a0 = a[i * k + p], a1 = a[(i + 1) * k + p], a2 = a[(i + 2) * k + p], a3 = a[(i + 3) * k + p];
      const float* __restrict xp = x + p * n;
      for (int64_t j = 0; j < n; ++j) {
        const float v = xp[j];
        z0[j] += a0 * v;
        z1[j] += a1 * v;
        z2[j] += a2 * v;
        z3[j] += a3 * v;
      }
    }
  }
  for (; i < end; ++i) {
    float* __restrict zi = z + i * n;
    std::fill(zi, zi + n, 0.0f);
    for (int64_t p = 0; p < k; ++p) {
      const float ai = a[i * k + p];
      const float* __restrict xp = x + p * n;
      for (int64_t j = 0; j < n; ++j) zi[j] += ai * xp[j];
    }
  }
}

}  // namespace

void matmul(const float* a, const float* x, float* z, int64_t m, int64_t k, int64_t n) {
  const int64_t blocks = (m + kRowBlock - 1) / kRowBlock;
  const auto threads = static_cast<int64_t>(available_threads());
  const int64_t slices = m * k * n < kMinThreadedWork ? 1 : std::min({threads, blocks, int64_t{kMaxSlices}});
  if (slices <= 1) {
    matmul_rows(a, x, z, 0, m, k, n);
    return;
  }
  run_slices(static_cast<size_t>(m), static_cast<size_t>(slices), kRowBlock, [&](size_t, size_t begin, size_t end) {
    matmul_rows(a, x, z, static_cast<int64_t>(begin), static_cast<int64_t>(end), k, n);
  });
}

void matmul_reference(const float* a, const float* x, float* z, int64_t m, int64_t k, int64_t n) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < k; ++p) s += static_cast<double>(a[i * k + p]) * x[p * n + j];
      z[i * n + j] = static_cast<float>(s);
    }
}

}  // namespace amct
