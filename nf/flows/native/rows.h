// Helpers of the compiled loops (nf.flows.native): row-major blocks of rows, BLAS products on them, and the
// split of a batch's rows between threads.

#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <climits>
#include <initializer_list>
#include <vector>

namespace nf_native {

using at::Tensor;

// The (n x width) block of rows ld apart at p, as a tensor (no copy): for the vectorised ATen functions.
template <typename T>
Tensor view(const T* p, int64_t n, int64_t width, int64_t ld) {
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  return at::from_blob(const_cast<T*>(p), {n, width}, {ld, 1}, options);
}

// The Fortran BLAS of the BLAS that PyTorch links, when it exports one (weak: null when it does not).
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

template <typename T>
struct Blas;
template <>
struct Blas<float> {
  static constexpr auto gemm = &sgemm_;
};
template <>
struct Blas<double> {
  static constexpr auto gemm = &dgemm_;
};

// Whether products call the Fortran BLAS above (set by check_blas when the module loads).
inline bool& blas_enabled() {
  static bool enabled = true;
  return enabled;
}

// Row-major C (m x n, ldc) = A (m x k, lda) B (k x n, ldb) + beta C.  The column-major BLAS computes C' = B' A'
// (32-bit sizes: the LP64 interface, which check_blas verifies); without it, at::addmm on views of the same memory.
template <typename T>
void mm(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
        int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (Blas<T>::gemm != nullptr && blas_enabled() && std::max({m, n, k, lda, ldb, ldc}) <= INT_MAX) {
    const int mi = int(m), ni = int(n), ki = int(k), la = int(lda), lb = int(ldb), lc = int(ldc);
    const T one = 1;
    Blas<T>::gemm("N", "N", &ni, &mi, &ki, &one, b, &lb, a, &la, &beta, c, &lc);
    return;
  }
  Tensor a_ = view(a, m, k, lda), b_ = view(b, k, n, ldb), c_ = view(c, m, n, ldc);
  if (beta == T(0))
    at::mm_out(c_, a_, b_);
  else
    at::addmm_out(c_, c_, a_, b_, beta, 1);
}

// Compares the BLAS products with at::mm on small matrices, in float32 and float64, and leaves the BLAS on only if
// they agree (an ILP64 or otherwise unexpected BLAS behind the symbols falls back to at::mm, not to garbage).
inline bool check_blas() {
  blas_enabled() = true;
  bool agree = Blas<float>::gemm != nullptr && Blas<double>::gemm != nullptr;
  for (auto dtype : {at::kFloat, at::kDouble}) {
    if (!agree) break;
    const Tensor a = at::arange(6, dtype).reshape({2, 3}).add(1), b = at::arange(12, dtype).reshape({3, 4}).sub(5);
    Tensor c = at::full({2, 4}, 0.5, dtype);
    const Tensor expected = at::addmm(c, a, b, 2, 1);
    AT_DISPATCH_FLOATING_TYPES(dtype, "check_blas", [&] {
      mm<scalar_t>(2, 4, 3, a.data_ptr<scalar_t>(), 3, b.data_ptr<scalar_t>(), 4, scalar_t(2), c.data_ptr<scalar_t>(),
                   4);
    });
    agree = at::equal(c, expected);
  }
  blas_enabled() = agree;
  return agree;
}

// Slot k of a row-major (slots, rows, width) stack, from its row begin on.
template <typename T>
T* slot_rows(const Tensor& stack, int64_t k, int64_t begin) {
  return stack.data_ptr<T>() + (k * stack.size(1) + begin) * stack.size(2);
}

// Each row of the (n x width, ld) block at c set to the vector v.
template <typename T>
inline void fill_rows(T* c, int64_t ld, int64_t n, int64_t width, const T* v) {
  for (int64_t r = 0; r < n; ++r) std::copy(v, v + width, c + r * ld);
}

template <typename T>
void relu_rows(T* c, int64_t ld, int64_t n, int64_t width) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < width; ++i) c[r * ld + i] = std::max(c[r * ld + i], T(0));
}

// Runs body(begin, end) on one range of rows per thread (inline with one thread), gradients off.
template <typename Body>
void split_rows(int64_t n, const Body& body) {
  at::NoGradGuard no_grad;
  const int64_t threads = at::get_num_threads();
  if (threads == 1 || n < 2) {
    body(int64_t(0), n);
    return;
  }
  at::parallel_for(0, n, (n + threads - 1) / threads, [&](int64_t begin, int64_t end) {
    at::NoGradGuard no_grad_here;
    body(begin, end);
  });
}

// Tensors a loop writes into: on the CPU, of the loop's dtype, contiguous (their rows are addressed directly).
inline void check_written(const std::vector<Tensor>& tensors, at::ScalarType dtype, const char* where) {
  for (const auto& t : tensors) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype, where, ": every tensor on the CPU, of one dtype");
    TORCH_CHECK(t.is_contiguous(), where, ": the tensors it writes must be contiguous");
  }
}

// Tensors a loop reads: on the CPU, of the loop's dtype, made contiguous (a copy only if they are not).
inline std::vector<Tensor> readable(const std::vector<Tensor>& tensors, at::ScalarType dtype, const char* where) {
  std::vector<Tensor> out;
  for (const auto& t : tensors) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype, where, ": every tensor on the CPU, of one dtype");
    out.push_back(t.contiguous());
  }
  return out;
}

// Stacks over blocks or layers: (blocks, rows, width) each.
inline void check_stacks(const std::vector<Tensor>& stacks, int64_t blocks, int64_t rows, const char* where) {
  for (const auto& t : stacks)
    TORCH_CHECK(t.dim() == 3 && t.size(0) == blocks && t.size(1) == rows, where, ": a stack of shape (", blocks,
                ", ", rows, ", width) expected, got ", t.sizes());
}

}  // namespace nf_native
