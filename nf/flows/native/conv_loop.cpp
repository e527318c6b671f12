// The block loops of the fused convolutional flow (nf/flows/conv_loops.py), compiled.
//
// The same maths as the Python loops (python_forward, python_backward), block by block, with two changes that the
// Python loops cannot make: every pointwise step of a block (the circular convolution's product with S_k, the
// ReLUs, the convolutional kernel W = (eps + softplus(s)) e^{i phi} and its product with rfft(x_B), the gate) is one
// pass over the rows in plain C++, and every matrix product calls BLAS directly (the BLAS PyTorch links), so a
// block costs its arithmetic and a few BLAS calls instead of about twenty ATen operations each way.  The rows of a
// batch are independent in every step, so they are split into one range per thread (at::parallel_for).
//
// Layout.  Rows are the flattened batch (R rows).  Stacks over blocks are row-major (K or 1, R, width), one slot
// reused by every block when no gradient is kept.  Complex numbers are interleaved (re, im).  The circular spectra
// (K, R_s, 2 f) and the context terms (K, R_t, H) may be broadcast over the batch: row r reads their row
// spectra_rows[r] and terms_rows[r].  The read of block k, Y R_k, has the columns [rfft(x_B) | x_A | x_A W_k' |
// padding]; the coupling network's output [a + c | phi | t].

#include <cmath>

#include "loops.h"
#include "rows.h"

namespace nf_native {
namespace {

// The columns of the read Y R_k and of the coupling network's output (module comment).
struct Widths {
  int64_t dim, n_half, f_half, f_full, read, first, output;
  std::vector<int64_t> hidden;  // the coupling network's layer widths, first layer first
};

// The offset of the updated half B, and of the conditioning half A, in a sample.
std::pair<int64_t, int64_t> halves(bool swap, int64_t n_half) {
  return swap ? std::make_pair(int64_t(0), n_half) : std::make_pair(n_half, int64_t(0));
}

template <typename T>
T* data(const Tensor& t) {
  return t.data_ptr<T>();
}

template <typename T>
void forward_rows(int64_t begin, int64_t end, bool keep, const Tensor& z0, const Tensor& spectra,
                  const int64_t* spectra_rows, const Tensor& dfts, const Tensor& reads, const Tensor& terms,
                  const int64_t* terms_rows, const std::vector<Tensor>& hidden_weights_t,
                  const std::vector<Tensor>& hidden_biases, const Tensor& last_t, const Tensor& last_bias,
                  const Tensor& idft_half, const Tensor& alpha, const Tensor& half_multiplicity,
                  const std::vector<Tensor>& stored, const std::vector<bool>& swaps, const Widths& w,
                  T min_magnitude, T* coupling_log_det, T* gate_log_det) {
  const int64_t n = end - begin, n_blocks = dfts.size(0), depth = int64_t(w.hidden.size());
  const int64_t D = w.dim, F = 2 * w.f_full, FH = 2 * w.f_half, NH = w.n_half, O = w.output;
  // block k's rows [begin, end) of a stack (its one slot when no gradient is kept)
  auto at = [&](const Tensor& stack, int64_t k) { return slot_rows<T>(stack, keep ? k : 0, begin); };
  std::vector<T> spectrum(n * F);
  const T* z = data<T>(z0) + begin * D;
  for (int64_t k = 0; k < n_blocks; ++k) {
    // circular convolution: Y = S_k rfft(z)
    T* y = at(stored[0], k);
    mm<T>(n, F, D, z, D, data<T>(dfts) + k * D * F, F, T(0), spectrum.data(), F);
    const T* s_k = data<T>(spectra) + k * spectra.size(1) * F;
    for (int64_t r = 0; r < n; ++r) {
      const T *x = spectrum.data() + r * F, *s = s_k + spectra_rows[begin + r] * F;
      T* out = y + r * F;
      for (int64_t j = 0; j < F; j += 2) {
        out[j] = x[j] * s[j] - x[j + 1] * s[j + 1];
        out[j + 1] = x[j] * s[j + 1] + x[j + 1] * s[j];
      }
    }
    // read rfft(x_B), x_A and x_A W_k'
    T* read = at(stored[1], k);
    mm<T>(n, w.read, F, y, F, data<T>(reads) + k * F * w.read, w.read, T(0), read, w.read);
    // coupling network: h_0 = relu(x_A W_k' + u_k), h_j = relu(h_{j-1} V_jk' + c_jk), o = h_J L_k' + l_k
    T* h = read + w.first;
    int64_t ld_h = w.read, width = w.hidden[0];
    const T* t_k = data<T>(terms) + k * terms.size(1) * width;
    for (int64_t r = 0; r < n; ++r) {
      const T* t = t_k + terms_rows[begin + r] * width;
      for (int64_t i = 0; i < width; ++i) h[r * ld_h + i] = std::max(h[r * ld_h + i] + t[i], T(0));
    }
    for (int64_t j = 1; j < depth; ++j) {
      const int64_t next = w.hidden[j];
      T* h_next = at(stored[8 + j], k);
      fill_rows(h_next, next, n, next, data<T>(hidden_biases[j - 1]) + k * next);
      mm<T>(n, next, width, h, ld_h, data<T>(hidden_weights_t[j - 1]) + k * width * next, next, T(1), h_next, next);
      relu_rows(h_next, next, n, next);
      h = h_next, ld_h = next, width = next;
    }
    T* o = at(stored[5], k);
    fill_rows(o, O, n, O, data<T>(last_bias) + k * O);
    mm<T>(n, O, width, h, ld_h, data<T>(last_t) + k * width * O, O, T(1), o, O);
    // convolutional coupling: W = (eps + softplus(a + c)) e^{i phi}, W rfft(x_B)
    T *magnitude = at(stored[6], k), *kernel = at(stored[7], k), *product = at(stored[8], k);
    for (int64_t r = 0; r < n; ++r) std::copy(o + r * O, o + r * O + w.f_half, magnitude + r * w.f_half);
    Tensor magnitude_k = view(magnitude, n, w.f_half, w.f_half);  // contiguous: softplus vectorised over all rows
    at::softplus_out(magnitude_k, magnitude_k, 1, 20).add_(min_magnitude);
    for (int64_t r = 0; r < n; ++r) {
      const T *o_r = o + r * O, *x = read + r * w.read;
      for (int64_t j = 0; j < w.f_half; ++j) {
        const T m = magnitude[r * w.f_half + j], phi = o_r[w.f_half + j];
        const T re = m * std::cos(phi), im = m * std::sin(phi);
        kernel[r * FH + 2 * j] = re, kernel[r * FH + 2 * j + 1] = im;
        product[r * FH + 2 * j] = x[2 * j] * re - x[2 * j + 1] * im;
        product[r * FH + 2 * j + 1] = x[2 * j] * im + x[2 * j + 1] * re;
      }
    }
    // x_B <- irfft(W rfft(x_B)) + t, x_A unchanged
    T* gate = at(stored[2], k);
    const auto [b, a] = halves(swaps[k], NH);
    for (int64_t r = 0; r < n; ++r) {
      std::copy(o + r * O + 2 * w.f_half, o + r * O + 2 * w.f_half + NH, gate + r * D + b);
      std::copy(read + r * w.read + FH, read + r * w.read + FH + NH, gate + r * D + a);
    }
    mm<T>(n, NH, FH, product, FH, data<T>(idft_half), NH, T(1), gate + b, D);
    // gate: z = sign(x) ln(1 + alpha |x|) (its 1 / alpha left to the next block's rfft matrix)
    T *level = at(stored[3], k), *signed_level = at(stored[4], k);
    const T* alpha_k = data<T>(alpha) + k * D;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < D; ++i) level[r * D + i] = std::abs(gate[r * D + i]) * alpha_k[i];
    view(level, n, D, D).log1p_();
    for (int64_t i = 0; i < n * D; ++i) signed_level[i] = std::copysign(level[i], gate[i]);
    if (!keep) {
      const T* multiplicity = data<T>(half_multiplicity);
      for (int64_t r = 0; r < n; ++r) {
        T coupling = 0, gates = 0;
        for (int64_t j = 0; j < w.f_half; ++j) coupling += std::log(magnitude[r * w.f_half + j]) * multiplicity[j];
        for (int64_t i = 0; i < D; ++i) gates += level[r * D + i];
        coupling_log_det[begin + r] += coupling;
        gate_log_det[begin + r] -= gates;
      }
    }
    z = signed_level;
  }
}

template <typename T>
void backward_rows(int64_t begin, int64_t end, const Tensor& gate_grads, const Tensor& g_0,
                   const Tensor& through_gate_log_det, const Tensor& slope, const Tensor& to_spectrum,
                   const Tensor& through_log_det, const Tensor& rise_per_magnitude, const Tensor& to_input,
                   const Tensor& output_grads, const Tensor& last, const std::vector<Tensor>& deeper_errors,
                   const std::vector<Tensor>& masks, const std::vector<Tensor>& hidden_weights,
                   const Tensor& read_grads, const Tensor& reads_t, const Tensor& y_grads, const Tensor& spectra_conj,
                   const int64_t* spectra_rows, const Tensor& dft_t, const Tensor& idft_half_t,
                   const std::vector<bool>& swaps, const Widths& w) {
  const int64_t n = end - begin, n_blocks = gate_grads.size(0), depth = int64_t(w.hidden.size());
  const int64_t D = w.dim, F = 2 * w.f_full, FH = 2 * w.f_half, NH = w.n_half, O = w.output;
  auto at = [&](const Tensor& stack, int64_t k) { return slot_rows<T>(stack, k, begin); };
  std::vector<T> g_x(n * D), g_y_half(n * FH), g_z(n * F);
  for (int64_t k = n_blocks - 1; k >= 0; --k) {
    // gate, with its log-determinant: dL/dx = dL/dlogdet d(logdet)/dx + dL/dz dz/dx
    const T *g = at(gate_grads, k), *via = at(through_gate_log_det, k), *sl = at(slope, k);
    for (int64_t i = 0; i < n * D; ++i) g_x[i] = via[i] + g[i] * sl[i];
    // convolutional coupling: dL/do = (dL/ds, dL/dphi, dL/dt) and dL/drfft(x_B), with q = dL/dY conj(W rfft(x_B)):
    // dL/ds = Re(q) sigmoid(s) / |W| (+ the log-determinant's), dL/dphi = Im(q); dL/drfft(x_B) = dL/dY conj(W)
    const auto [b, a] = halves(swaps[k], NH);
    mm<T>(n, FH, NH, g_x.data() + b, D, data<T>(idft_half_t), FH, T(0), g_y_half.data(), FH);
    T *g_o = at(output_grads, k), *g_r = at(read_grads, k);
    const T *to_w = at(to_spectrum, k), *to_z = at(to_input, k);
    const T *via_magnitude = at(through_log_det, k), *rise = at(rise_per_magnitude, k);
    for (int64_t r = 0; r < n; ++r) {
      const T* gy = g_y_half.data() + r * FH;
      T *o_r = g_o + r * O, *read_r = g_r + r * w.read;
      for (int64_t j = 0; j < w.f_half; ++j) {
        const T re = gy[2 * j], im = gy[2 * j + 1], wr = to_w[r * FH + 2 * j], wi = to_w[r * FH + 2 * j + 1];
        const T zr = to_z[r * FH + 2 * j], zi = to_z[r * FH + 2 * j + 1];
        o_r[j] = via_magnitude[r * w.f_half + j] + (re * wr - im * wi) * rise[r * w.f_half + j];
        o_r[w.f_half + j] = re * wi + im * wr;
        read_r[2 * j] = re * zr - im * zi;
        read_r[2 * j + 1] = re * zi + im * zr;
      }
      std::copy(g_x.data() + r * D + b, g_x.data() + r * D + b + NH, o_r + 2 * w.f_half);
      std::copy(g_x.data() + r * D + a, g_x.data() + r * D + a + NH, read_r + FH);
    }
    // coupling network, back to its first layer's pre-activation: e = (e_next V) * relu'
    T* e = depth > 1 ? at(deeper_errors[depth - 2], k) : g_r + w.first;
    int64_t ld_e = depth > 1 ? w.hidden[depth - 1] : w.read;
    mm<T>(n, w.hidden[depth - 1], O, g_o, O, data<T>(last) + k * O * w.hidden[depth - 1], w.hidden[depth - 1], T(0),
          e, ld_e);
    for (int64_t j = depth - 1; j >= 0; --j) {
      const int64_t width = w.hidden[j];
      const T* m = at(masks[j], k);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < width; ++i) e[r * ld_e + i] *= m[r * width + i];
      if (j == 0) break;
      T* e_prev = j > 1 ? at(deeper_errors[j - 2], k) : g_r + w.first;
      const int64_t ld_prev = j > 1 ? w.hidden[j - 1] : w.read;
      mm<T>(n, w.hidden[j - 1], width, e, ld_e, data<T>(hidden_weights[j - 1]) + k * width * w.hidden[j - 1],
            w.hidden[j - 1], T(0), e_prev, ld_prev);
      e = e_prev, ld_e = ld_prev;
    }
    // back through R_k to Y, then the circular convolution to dL/dz before the block
    T* g_y = at(y_grads, k);
    mm<T>(n, F, w.read, g_r, w.read, data<T>(reads_t) + k * w.read * F, F, T(0), g_y, F);
    const T* s_k = data<T>(spectra_conj) + k * spectra_conj.size(1) * F;
    for (int64_t r = 0; r < n; ++r) {
      const T *x = g_y + r * F, *s = s_k + spectra_rows[begin + r] * F;
      T* out = g_z.data() + r * F;
      for (int64_t j = 0; j < F; j += 2) {
        out[j] = x[j] * s[j] - x[j + 1] * s[j + 1];
        out[j + 1] = x[j] * s[j + 1] + x[j + 1] * s[j];
      }
    }
    T* g_before = k == 0 ? data<T>(g_0) + begin * D : at(gate_grads, k - 1);
    mm<T>(n, D, F, g_z.data(), F, data<T>(dft_t), D, T(0), g_before, D);
  }
}

Widths widths(int64_t dim, int64_t f_full, int64_t f_half, int64_t read, int64_t output,
              const std::vector<int64_t>& hidden) {
  const int64_t n_half = dim / 2;
  return Widths{dim, n_half, f_half, f_full, read, 2 * f_half + n_half, output, hidden};
}

// The row maps: one int64 index per row, into a stack of rows_available rows.
void check_row_map(const Tensor& map, int64_t rows, int64_t rows_available, const char* where) {
  TORCH_CHECK(map.device().is_cpu() && map.scalar_type() == at::kLong && map.dim() == 1 && map.size(0) == rows,
              where, ": a row map needs one int64 index per row");
  TORCH_CHECK(rows == 0 || (map.min().item<int64_t>() >= 0 && map.max().item<int64_t>() < rows_available), where,
              ": a row map points outside its stack");
}

}  // namespace

// The forward loop (python_forward), on rows: z (R, D); spectra (K, R_s, 2 f) and terms (K, R_t, H) read at the
// rows spectra_rows and terms_rows; stored = convolved, read, gate_in, levels, signed, outputs, magnitudes,
// kernels, products, the deeper activations, as (K or 1, R, width); the log-determinants (R,) when keep is false.
void conv_forward(bool keep, const Tensor& z, const Tensor& spectra, const Tensor& spectra_rows, const Tensor& dfts,
                  const Tensor& reads, const Tensor& terms, const Tensor& terms_rows,
                  const std::vector<Tensor>& hidden_weights_t, const std::vector<Tensor>& hidden_biases,
                  const Tensor& last_t, const Tensor& last_bias, const Tensor& idft_half, const Tensor& alpha,
                  const Tensor& half_multiplicity, const std::vector<Tensor>& stored, const std::vector<bool>& swaps,
                  const std::vector<int64_t>& hidden, double min_magnitude, const Tensor& coupling_log_det,
                  const Tensor& gate_log_det) {
  const char* where = "conv_forward";
  const auto dtype = z.scalar_type();
  const int64_t n_blocks = dfts.size(0), rows = z.size(0), depth = int64_t(hidden.size());
  TORCH_CHECK(z.dim() == 2 && depth >= 1 && int64_t(stored.size()) == 8 + depth && int64_t(swaps.size()) == n_blocks,
              where, ": z (rows, D), a coupling network with a hidden layer, 8 + depth stored stacks, a swap a block");
  check_written(stored, dtype, where);
  check_stacks(stored, keep ? n_blocks : 1, rows, where);
  if (!keep) check_written({coupling_log_det.view({rows}), gate_log_det.view({rows})}, dtype, where);
  const auto in = readable({z, spectra, dfts, reads, terms, last_t, last_bias, idft_half, alpha, half_multiplicity},
                           dtype, where);
  const auto hw = readable(hidden_weights_t, dtype, where), hb = readable(hidden_biases, dtype, where);
  const Tensor &z_c = in[0], &s = in[1], &d = in[2], &r = in[3], &t = in[4], &l = in[5], &lb = in[6];
  const Tensor &ih = in[7], &al = in[8], &hm = in[9];
  check_stacks({s}, n_blocks, s.size(1), where);
  check_stacks({t}, n_blocks, t.size(1), where);
  check_row_map(spectra_rows, rows, s.size(1), where);
  check_row_map(terms_rows, rows, t.size(1), where);
  const Widths w = widths(z.size(1), s.size(2) / 2, stored[7].size(-1) / 2, stored[1].size(-1), stored[5].size(-1),
                          hidden);
  TORCH_CHECK(t.size(2) == hidden[0] && d.size(2) == s.size(2) && r.size(2) == w.read && w.first + hidden[0] <= w.read,
              where, ": widths of the terms, Fourier matrices and reads disagree");
  const Tensor s_rows = spectra_rows.contiguous(), t_rows = terms_rows.contiguous();
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "conv_forward", [&] {
    scalar_t* cld = keep ? nullptr : coupling_log_det.data_ptr<scalar_t>();
    scalar_t* gld = keep ? nullptr : gate_log_det.data_ptr<scalar_t>();
    split_rows(z.size(0), [&](int64_t begin, int64_t end) {
      forward_rows<scalar_t>(begin, end, keep, z_c, s, s_rows.data_ptr<int64_t>(), d, r, t,
                             t_rows.data_ptr<int64_t>(), hw, hb, l, lb, ih, al, hm, stored, swaps, w,
                             scalar_t(min_magnitude), cld, gld);
    });
  });
}

// The backward recursion (python_backward), on rows: every stack (K, R, width); to_spectrum and to_input
// interleaved complex numbers; deeper_errors the coupling networks' errors after the first layer's (which is a
// view of read_grads).
void conv_backward(const Tensor& gate_grads, const Tensor& g_0, const Tensor& through_gate_log_det,
                   const Tensor& slope, const Tensor& to_spectrum, const Tensor& through_log_det,
                   const Tensor& rise_per_magnitude, const Tensor& to_input, const Tensor& output_grads,
                   const Tensor& last, const std::vector<Tensor>& deeper_errors, const std::vector<Tensor>& masks,
                   const std::vector<Tensor>& hidden_weights, const Tensor& read_grads, const Tensor& reads_t,
                   const Tensor& y_grads, const Tensor& spectra_conj, const Tensor& spectra_rows, const Tensor& dft_t,
                   const Tensor& idft_half_t, const std::vector<bool>& swaps, const std::vector<int64_t>& hidden) {
  const char* where = "conv_backward";
  const auto dtype = g_0.scalar_type();
  const int64_t n_blocks = gate_grads.size(0), rows = g_0.size(0), depth = int64_t(hidden.size());
  TORCH_CHECK(g_0.dim() == 2 && depth >= 1 && int64_t(deeper_errors.size()) == depth - 1 &&
                  int64_t(masks.size()) == depth && int64_t(swaps.size()) == n_blocks,
              where, ": dL/dz_0 (rows, D), one mask a layer, errors after the first layer, a swap a block");
  check_written({gate_grads, g_0, output_grads, read_grads, y_grads}, dtype, where);
  check_written(deeper_errors, dtype, where);
  check_stacks({gate_grads, output_grads, read_grads, y_grads}, n_blocks, rows, where);
  check_stacks(deeper_errors, n_blocks, rows, where);
  const auto in = readable({through_gate_log_det, slope, to_spectrum, through_log_det, rise_per_magnitude, to_input,
                            last, reads_t, spectra_conj, dft_t, idft_half_t},
                           dtype, where);
  const auto ms = readable(masks, dtype, where), hw = readable(hidden_weights, dtype, where);
  const Tensor &tg = in[0], &sl = in[1], &ts = in[2], &tl = in[3], &ri = in[4], &ti = in[5], &la = in[6];
  const Tensor &rt = in[7], &sc = in[8], &dt = in[9], &iht = in[10];
  check_stacks({tg, sl, ts, tl, ri, ti}, n_blocks, rows, where);
  check_stacks(ms, n_blocks, rows, where);
  check_stacks({sc}, n_blocks, sc.size(1), where);
  check_row_map(spectra_rows, rows, sc.size(1), where);
  const Widths w = widths(g_0.size(1), sc.size(2) / 2, ts.size(-1) / 2, read_grads.size(-1), output_grads.size(-1),
                          hidden);
  const Tensor s_rows = spectra_rows.contiguous();
  AT_DISPATCH_FLOATING_TYPES(g_0.scalar_type(), "conv_backward", [&] {
    split_rows(g_0.size(0), [&](int64_t begin, int64_t end) {
      backward_rows<scalar_t>(begin, end, gate_grads, g_0, tg, sl, ts, tl, ri, ti, output_grads, la, deeper_errors,
                              ms, hw, read_grads, rt, y_grads, sc, s_rows.data_ptr<int64_t>(), dt, iht, swaps, w);
    });
  });
}

}  // namespace nf_native
