// The compiled loops (nf.flows.native), each the twin of a Python loop it is tested against.

#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace nf_native {

// nf/flows/conv_loops.py, python_forward and python_backward (conv_loop.cpp).
void conv_forward(bool keep, const at::Tensor& z, const at::Tensor& spectra, const at::Tensor& spectra_rows,
                  const at::Tensor& dfts, const at::Tensor& reads, const at::Tensor& terms,
                  const at::Tensor& terms_rows, const std::vector<at::Tensor>& hidden_weights_t,
                  const std::vector<at::Tensor>& hidden_biases, const at::Tensor& last_t, const at::Tensor& last_bias,
                  const at::Tensor& idft_half, const at::Tensor& alpha, const at::Tensor& half_multiplicity,
                  const std::vector<at::Tensor>& stored, const std::vector<bool>& swaps,
                  const std::vector<int64_t>& hidden, double min_magnitude, const at::Tensor& coupling_log_det,
                  const at::Tensor& gate_log_det);
void conv_backward(const at::Tensor& gate_grads, const at::Tensor& g_0, const at::Tensor& through_gate_log_det,
                   const at::Tensor& slope, const at::Tensor& to_spectrum, const at::Tensor& through_log_det,
                   const at::Tensor& rise_per_magnitude, const at::Tensor& to_input, const at::Tensor& output_grads,
                   const at::Tensor& last, const std::vector<at::Tensor>& deeper_errors,
                   const std::vector<at::Tensor>& masks, const std::vector<at::Tensor>& hidden_weights,
                   const at::Tensor& read_grads, const at::Tensor& reads_t, const at::Tensor& y_grads,
                   const at::Tensor& spectra_conj, const at::Tensor& spectra_rows, const at::Tensor& dft_t,
                   const at::Tensor& idft_half_t, const std::vector<bool>& swaps, const std::vector<int64_t>& hidden);

// nf/flows/coupling_chain.py, python_coupling_forward and python_coupling_backward (coupling_loop.cpp).
void coupling_forward(const at::Tensor& inputs, const std::vector<at::Tensor>& activations, const at::Tensor& first_t,
                      const std::vector<at::Tensor>& hidden_t, const at::Tensor& last_t, const at::Tensor& out);
void coupling_backward(const at::Tensor& outputs, const std::vector<at::Tensor>& errors,
                       const std::vector<at::Tensor>& masks, const at::Tensor& first,
                       const std::vector<at::Tensor>& hidden, const at::Tensor& last, const at::Tensor& grad_in);

}  // namespace nf_native
