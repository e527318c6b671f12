// The coupling loop of the folded NICE flow (nf/flows/coupling_chain.py, _CouplingLoop), compiled.
//
// The same recursion as the Python loop, coupling by coupling, with every matrix product a direct BLAS call into
// the stored stacks and the ReLUs one pass each, on one range of rows per thread: the rows of a batch are
// independent in every step.  Stacks are row-major (K, R, width).

#include "loops.h"
#include "rows.h"

namespace nf_native {

// Forward (python_coupling_forward): inputs[0] holds v_0 and each activation stack its biases (the first layer's
// terms t_k); fills inputs[k] (v before coupling k) and the activations, and writes v_K into out (R, D).
void coupling_forward(const Tensor& inputs, const std::vector<Tensor>& activations, const Tensor& first_t,
                      const std::vector<Tensor>& hidden_t, const Tensor& last_t, const Tensor& out) {
  const char* where = "coupling_forward";
  const auto dtype = inputs.scalar_type();
  const int64_t n_layers = inputs.size(0), rows = inputs.size(1), dim = inputs.size(2);
  const int64_t depth = int64_t(activations.size());
  TORCH_CHECK(depth >= 1 && int64_t(hidden_t.size()) == depth - 1 && out.numel() == rows * dim, where,
              ": one activation stack a layer, one weight stack between layers, out of (rows, D)");
  check_written({inputs, out}, dtype, where);
  check_written(activations, dtype, where);
  const auto weights = readable({first_t, last_t}, dtype, where);
  const auto hidden = readable(hidden_t, dtype, where);
  check_stacks(activations, n_layers, rows, where);
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "coupling_forward", [&] {
    using T = scalar_t;
    split_rows(rows, [&](int64_t begin, int64_t end) {
      const int64_t n = end - begin;
      auto at = [&](const Tensor& stack, int64_t k) { return slot_rows<T>(stack, k, begin); };
      for (int64_t k = 0; k < n_layers; ++k) {
        // h_0 = relu(v W_k' + t_k), h_j = relu(h_{j-1} V_jk' + c_jk)
        const T* h = at(inputs, k);
        int64_t width = dim;
        for (int64_t j = 0; j < depth; ++j) {
          const int64_t next = activations[j].size(2);
          const T* w = j == 0 ? weights[0].data_ptr<T>() + k * dim * next
                              : hidden[j - 1].data_ptr<T>() + k * width * next;
          T* h_next = at(activations[j], k);
          mm<T>(n, next, width, h, width, w, next, T(1), h_next, next);
          relu_rows(h_next, next, n, next);
          h = h_next, width = next;
        }
        // v <- v + h_J L_k'
        T* v_next = k + 1 < n_layers ? at(inputs, k + 1) : out.data_ptr<T>() + begin * dim;
        std::copy(at(inputs, k), at(inputs, k) + n * dim, v_next);
        mm<T>(n, dim, width, h, width, weights[1].data_ptr<T>() + k * width * dim, dim, T(1), v_next, dim);
      }
    });
  });
}

// Backward (python_coupling_backward): from g = dL/dv_K in the last slot of outputs, fills the other slots (g after
// each coupling), the errors e at every pre-activation, and writes dL/dv_0 into grad_in (R, D).
void coupling_backward(const Tensor& outputs, const std::vector<Tensor>& errors, const std::vector<Tensor>& masks,
                       const Tensor& first, const std::vector<Tensor>& hidden, const Tensor& last,
                       const Tensor& grad_in) {
  const char* where = "coupling_backward";
  const auto dtype = outputs.scalar_type();
  const int64_t n_layers = outputs.size(0), rows = outputs.size(1), dim = outputs.size(2);
  const int64_t depth = int64_t(errors.size());
  TORCH_CHECK(depth >= 1 && int64_t(masks.size()) == depth && int64_t(hidden.size()) == depth - 1 &&
                  grad_in.numel() == rows * dim,
              where, ": one error and one mask stack a layer, one weight stack between layers, grad_in of (rows, D)");
  check_written({outputs, grad_in}, dtype, where);
  check_written(errors, dtype, where);
  const auto weights = readable({first, last}, dtype, where);
  const auto masks_c = readable(masks, dtype, where), hidden_c = readable(hidden, dtype, where);
  check_stacks(errors, n_layers, rows, where);
  check_stacks(masks_c, n_layers, rows, where);
  AT_DISPATCH_FLOATING_TYPES(outputs.scalar_type(), "coupling_backward", [&] {
    using T = scalar_t;
    split_rows(rows, [&](int64_t begin, int64_t end) {
      const int64_t n = end - begin;
      auto at = [&](const Tensor& stack, int64_t k) { return slot_rows<T>(stack, k, begin); };
      for (int64_t k = n_layers - 1; k >= 0; --k) {
        // e = (g L_k) * [h_J > 0], then e <- (e V_jk) * [h_{j-1} > 0]
        const T* g = at(outputs, k);
        const T* w = weights[1].data_ptr<T>() + k * dim * errors[depth - 1].size(2);
        const T* e_above = g;
        int64_t width_above = dim;
        for (int64_t j = depth - 1; j >= 0; --j) {
          const int64_t width = errors[j].size(2);
          T* e = at(errors[j], k);
          mm<T>(n, width, width_above, e_above, width_above, w, width, T(0), e, width);
          const T* m = at(masks_c[j], k);
          for (int64_t i = 0; i < n * width; ++i) e[i] *= m[i];
          if (j > 0) w = hidden_c[j - 1].data_ptr<T>() + k * width * errors[j - 1].size(2);
          e_above = e, width_above = width;
        }
        // g <- g + e W_k
        T* g_before = k > 0 ? at(outputs, k - 1) : grad_in.data_ptr<T>() + begin * dim;
        std::copy(g, g + n * dim, g_before);
        mm<T>(n, dim, width_above, e_above, width_above, weights[0].data_ptr<T>() + k * width_above * dim, dim, T(1),
              g_before, dim);
      }
    });
  });
}

}  // namespace nf_native
