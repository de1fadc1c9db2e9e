// The dense product AdaRound's sampled loop (adaround.cc) spends its time in:
// z[m x n] = a[m x k] * x[k x n], all row-major. matmul is the fast version
// (four output rows per pass over x, vectorized, rows split over threads);
// matmul_reference is the plain triple loop the tests compare it with.
#pragma once

#include <cstdint>

namespace amct {

void matmul(const float* a, const float* x, float* z, int64_t m, int64_t k, int64_t n);

void matmul_reference(const float* a, const float* x, float* z, int64_t m, int64_t k, int64_t n);

}  // namespace amct
