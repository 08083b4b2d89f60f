// Float64 dense helpers for the converter: matrix products and the symmetric eigensolver.
#pragma once
#include <vector>

#include "core/thread_pool.h"

namespace mla::linalg {

// C[m, n] = op(A) · op(B), row-major. op(A) is [m, k]: A is [m, k], or [k, m] when transA.
// op(B) is [k, n]: B is [k, n], or [n, k] when transB.
std::vector<double> matmul(ThreadPool& pool, const double* a, const double* b, int m, int k, int n, bool transA, bool transB);

struct Eigen {
  std::vector<double> values;   // [n], descending
  std::vector<double> vectors;  // [n, n] row-major; column c is the unit eigenvector of values[c]
};

// All eigenvalues and eigenvectors of the symmetric matrix a [n, n] (row-major; only symmetry is
// assumed, both triangles are read). Householder tridiagonalization, then implicit QL.
// Throws mla::Error if the QL iteration does not converge.
Eigen symmetricEigen(ThreadPool& pool, const double* a, int n);

}  // namespace mla::linalg
