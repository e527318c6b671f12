"""The block loops of the fused convolutional flow (``ConvChain``), in Python and compiled.

``_ConvLoop`` (``nf.flows.conv_chain``) computes everything that does not depend on the running sample for all
blocks at once; what is left is a loop over blocks, forward, and a recursion on ``dL/dz``, backward.  Both loops
exist twice, with one signature:

* here, in Python: the readable reference;
* in ``nf/flows/native/conv_loop.cpp``: the same steps on the same stored tensors, each matrix product one BLAS
  call and each run of pointwise steps one pass over the rows in plain C++, on one range of rows per thread (the
  rows of a batch are independent in every step).  It is built on first use by the local C++ compiler
  (``nf.flows.native``) and rounds differently in float32 (the biases enter the products).

``block_loops(like)`` gives the compiled loops when they are built and allowed for tensors like ``like``, else
these; ``native.python_loops()`` forces these for a while (tests compare the two; the benchmark measures both).

Tensors follow one layout: stacks over blocks come first, ``(K, *batch, width)`` (with one slot, ``(1, *batch,
width)``, reused by every block when no gradient is kept); the circular spectra and the coupling networks' context
terms are aligned on the batch dimensions and may broadcast over them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType, SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor

from nf.flows import native


def complex_view(x: Tensor) -> Tensor:
    """Interleaved ``(..., 2 f)`` real numbers as ``(..., f)`` complex ones (a view)."""
    return torch.view_as_complex(x.unflatten(-1, (-1, 2)))


def read_layout(f_half: int, n_half: int, width: int) -> tuple[slice, slice, slice]:
    """Where ``Y R_k`` keeps ``rfft(x_B)`` (``f_half`` interleaved frequencies), ``x_A`` (``n_half`` numbers) and
    the coupling network's first-layer product (``width`` numbers); a padding column may follow."""
    start = 2 * f_half + n_half
    return slice(None, 2 * f_half), slice(2 * f_half, start), slice(start, start + width)


def _thirds(f_half: int) -> tuple[slice, slice, slice]:
    """Where a coupling network's output ``(a + c, phi, t)`` keeps each part (``f_half`` frequencies each)."""
    return slice(None, f_half), slice(f_half, 2 * f_half), slice(2 * f_half, None)


def _oriented(x: Tensor, n_half: int, swap: bool) -> tuple[Tensor, Tensor]:
    """``(A, B)`` halves of ``x``: the conditioning half first, the updated one second."""
    first, second = x[..., :n_half], x[..., n_half:]
    return (second, first) if swap else (first, second)


def _per_block(stack: Tensor, n_blocks: int, keep: bool) -> list[Tensor]:
    """Each block's slot of a stack, or its one shared slot for every block."""
    return list(stack.unbind(0)) if keep else [stack[0]] * n_blocks


def _per_block_tuples(stacks: Sequence[Tensor], n_blocks: int) -> list[tuple[Tensor, ...]]:
    """Block ``k``'s slices of several ``(K, ...)`` stacks, as one tuple per block (empty tuples for no stacks)."""
    return list(zip(*(x.unbind(0) for x in stacks))) if stacks else [()] * n_blocks


def python_forward(
    keep: bool,
    z: Tensor,
    spectra: Tensor,
    dfts: Tensor,
    reads: Tensor,
    terms: Tensor,
    hidden_weights_t: list[Tensor],
    hidden_biases: list[Tensor],
    last_t: Tensor,
    last_bias: Tensor,
    idft_half: Tensor,
    alpha: Tensor,
    half_multiplicity: Tensor,
    stored: list[Tensor],
    swaps: list[bool],
    n_half: int,
    f_half: int,
    width: int,
    min_magnitude: float,
    coupling_log_det: Tensor,
    gate_log_det: Tensor,
) -> None:
    """The forward loop over blocks (``_ConvLoop``): fills ``stored`` (Y, what ``R_k`` reads, the gate's input,
    ``ln(1 + alpha|x|)``, the gate's output before ``1 / alpha``, the coupling network's output, ``|W|``, ``W``,
    ``W rfft(x_B)``, the deeper activations) and, when no gradient is kept, adds the couplings' and gates'
    log-determinants into ``coupling_log_det`` and ``gate_log_det``.  ``z_K`` before the last ``1 / alpha`` is
    left in the last slot of the gate's outputs.

    ``z`` is ``(*batch, D)``; ``spectra`` ``(K, *batch, f)`` complex; ``dfts`` the blocks' ``rfft`` matrices;
    ``reads`` the ``R_k``; ``terms`` the first layers' context terms; ``*_t`` right operands (transposed weights).
    """
    convolved, read, gate_in, levels, signed, outputs, magnitudes, kernels, products, *deeper = stored
    n_blocks = dfts.shape[0]
    at_h_in, at_x_a, at_first = read_layout(f_half, n_half, width)
    spectrum = z.new_empty(*z.shape[:-1], dfts.shape[-1])  # rfft(z), reused by every block
    spectrum_c = complex_view(spectrum)

    def per_block(stack: Tensor) -> list[Tensor]:
        return _per_block(stack, n_blocks, keep)

    circular = zip(per_block(convolved), per_block(complex_view(convolved)), spectra.unbind(0), dfts.unbind(0))
    network = zip(
        per_block(read),
        per_block(read[..., at_x_a]),
        reads.unbind(0),
        terms.unbind(0),
        zip(*(per_block(h) for h in [read[..., at_first], *deeper])),
        _per_block_tuples(hidden_weights_t, n_blocks),
        _per_block_tuples(hidden_biases, n_blocks),
        per_block(outputs),
        last_t.unbind(0),
        last_bias.unbind(0),
    )
    spectral = zip(
        zip(*(per_block(outputs[..., at]) for at in _thirds(f_half))),
        per_block(magnitudes),
        per_block(complex_view(kernels)),
        per_block(complex_view(products)),
        per_block(products),
        per_block(complex_view(read[..., at_h_in])),
    )
    gates = zip(
        [_oriented(g, n_half, swap) for g, swap in zip(per_block(gate_in), swaps)],
        per_block(gate_in),
        per_block(levels),
        per_block(signed),
        alpha.unbind(0),
    )
    for (y, y_c, spectrum_k, dft), net, spectral_views, gate_views in zip(circular, network, spectral, gates):
        r, x_a, reads_k, term, hs, ws, bs, o, w_o, b_o = net
        (raw, phase, shift), magnitude, kernel_c, product_c, product, h_in_c = spectral_views
        (gate_a, gate_b), gate, level, sign_level, a = gate_views
        # circular convolution Y = S_k rfft(z), read into rfft(x_B), x_A and x_A W_k'
        torch.matmul(z, dft, out=spectrum)
        torch.mul(spectrum_c, spectrum_k, out=y_c)
        torch.matmul(y, reads_k, out=r)
        # coupling network: o = (a + c, phi, t) from x_A and the context
        h = hs[0].add_(term).clamp_min_(0)
        for h_next, w, b in zip(hs[1:], ws, bs):
            h = torch.matmul(h, w, out=h_next).add_(b).clamp_min_(0)
        torch.matmul(h, w_o, out=o).add_(b_o)
        # convolutional coupling: x_B <- irfft(W rfft(x_B)) + t
        torch.add(F.softplus(raw.contiguous()), min_magnitude, out=magnitude)  # contiguous: measured faster
        torch.polar(magnitude, phase, out=kernel_c)
        torch.mul(h_in_c, kernel_c, out=product_c)
        torch.matmul(product, idft_half, out=gate_b).add_(shift)
        gate_a.copy_(x_a)
        # gate: z = sign(x) ln(1 + alpha |x|) / alpha, the 1 / alpha left to the next block's rfft matrix
        torch.log1p(torch.abs(gate, out=level).mul_(a), out=level)
        z = torch.copysign(level, gate, out=sign_level)
        if not keep:
            coupling_log_det += torch.log(magnitude) @ half_multiplicity
            gate_log_det -= level.sum(-1)


def python_backward(
    gate_grads: Tensor,
    g_0: Tensor,
    through_gate_log_det: Tensor,
    slope: Tensor,
    to_spectrum: Tensor,
    through_log_det: Tensor,
    rise_per_magnitude: Tensor,
    to_input: Tensor,
    output_grads: Tensor,
    last: Tensor,
    errors: list[Tensor],
    masks: list[Tensor],
    hidden_weights: list[Tensor],
    read_grads: Tensor,
    reads_t: Tensor,
    y_grads: Tensor,
    spectra_conj: Tensor,
    dft_t: Tensor,
    idft_half_t: Tensor,
    swaps: list[bool],
    n_half: int,
    f_half: int,
    width: int,
) -> None:
    """The backward recursion on ``dL/dz``, block by block (``_ConvLoop.backward``): from ``dL/dz_K`` in the last
    slot of ``gate_grads``, fills the other slots (``dL/dz`` after each block), ``output_grads`` (``dL/do``),
    ``read_grads`` (``dL/d(Y R_k)``), ``errors`` (the coupling networks' errors at their pre-activations, the first
    a view of ``read_grads``), ``y_grads`` (``dL/dY``) and ``g_0`` (``dL/dz_0``).  The other arguments are the
    pointwise factors ``_ConvLoop.backward`` computed for all blocks at once, the ReLU ``masks`` and the weights
    (``*_t``: transposed)."""
    n_blocks = gate_grads.shape[0]
    at_h_in, at_x_a, _ = read_layout(f_half, n_half, width)
    # buffers reused by every block, with their complex or interleaved views made once
    g_x, g_y_half = torch.empty_like(g_0), g_0.new_empty(*g_0.shape[:-1], 2 * f_half)
    g_y_half_c = complex_view(g_y_half)
    rotated, g_z = torch.empty_like(g_y_half_c), torch.empty_like(complex_view(y_grads[0]))
    rotated_re, rotated_im, g_z_r = rotated.real, rotated.imag, torch.view_as_real(g_z).flatten(-2)
    gate = zip(gate_grads.unbind(0), [g_0, *gate_grads.unbind(0)[:-1]], through_gate_log_det.unbind(0), slope.unbind(0))
    spectral = zip(
        to_spectrum.unbind(0),
        zip(*(output_grads[..., at].unbind(0) for at in _thirds(f_half))),
        through_log_det.unbind(0),
        rise_per_magnitude.unbind(0),
        to_input.unbind(0),
    )
    network = zip(
        output_grads.unbind(0),
        last.unbind(0),
        zip(*(e.unbind(0) for e in errors)),
        zip(*(m.unbind(0) for m in masks)),
        _per_block_tuples(hidden_weights, n_blocks),
        read_grads.unbind(0),
        complex_view(read_grads[..., at_h_in]).unbind(0),
        read_grads[..., at_x_a].unbind(0),
        reads_t.unbind(0),
    )
    circular = zip(y_grads.unbind(0), complex_view(y_grads).unbind(0), spectra_conj.unbind(0))
    parts = [_oriented(g_x, n_half, swap) for swap in swaps]
    blocks = list(zip(gate, parts, spectral, network, circular))
    for gate_views, (g_x_a, g_x_b), spectral_views, net, circular_views in reversed(blocks):
        g, g_before, via_log_det, gate_slope = gate_views
        to_w, (g_raw, g_phase, g_shift), via_magnitude, rise_k, to_z = spectral_views
        g_o, w_o, es, ms, ws, g_r, g_h_in, g_x_a_read, reads_k_t = net
        g_y, g_y_c, spectrum_conj = circular_views
        # gate, with its log-determinant
        torch.addcmul(via_log_det, g, gate_slope, out=g_x)
        # convolutional coupling: dL/do = (dL/ds, dL/dphi, dL/dt) and dL/drfft(x_B), with
        # dL/d|W| = Re(q) / |W| and dL/dphi = Im(q) for q = dL/dY conj(W rfft(x_B))
        torch.matmul(g_x_b, idft_half_t, out=g_y_half)
        torch.mul(g_y_half_c, to_w, out=rotated)
        torch.addcmul(via_magnitude, rotated_re, rise_k, out=g_raw)
        g_phase.copy_(rotated_im)
        g_shift.copy_(g_x_b)
        torch.mul(g_y_half_c, to_z, out=g_h_in)
        g_x_a_read.copy_(g_x_a)
        # coupling network, back to its first layer's pre-activation
        e = torch.mul(g_o @ w_o, ms[-1], out=es[-1])
        for e_j, m_j, w_j in zip(reversed(es[:-1]), reversed(ms[:-1]), reversed(ws)):
            e = torch.mul(e @ w_j, m_j, out=e_j)
        # back through R_k to Y, then the circular convolution to dL/dz before the block
        torch.matmul(g_r, reads_k_t, out=g_y)
        torch.mul(g_y_c, spectrum_conj, out=g_z)
        torch.matmul(g_z_r, dft_t, out=g_before)


def _on_rows(x: Tensor, batch: torch.Size) -> tuple[Tensor, Tensor]:
    """A ``(K, *b, w)`` stack that broadcasts over ``batch`` as ``(K, prod(b), w)`` rows, and the row each row of
    the flattened batch reads."""
    n = math.prod(x.shape[1:-1])
    index = torch.arange(n, device=x.device).view(x.shape[1:-1]).expand(batch).reshape(-1)
    return x.reshape(x.shape[0], n, x.shape[-1]), index


def _stack_rows(x: Tensor) -> Tensor:
    """A ``(K, *batch, width)`` stack as ``(K, rows, width)``: a view, so the compiled loops write into it."""
    return x.view(x.shape[0], -1, x.shape[-1])


def _interleaved(x: Tensor) -> Tensor:
    """``(..., f)`` complex numbers as ``(..., 2 f)`` interleaved real ones."""
    return torch.view_as_real(x).flatten(-2)


def _compiled_loops(module: ModuleType) -> SimpleNamespace:
    """The compiled loops behind the Python loops' signatures: batch dimensions flattened to rows, broadcast stacks
    read through row indices, complex numbers interleaved."""

    def forward(keep, z, spectra, dfts, reads, terms, hidden_weights_t, hidden_biases, *rest) -> None:
        last_t, last_bias, idft_half, alpha, half_multiplicity, stored, swaps, n_half, f_half, width, *rest = rest
        min_magnitude, coupling_log_det, gate_log_det = rest
        batch = z.shape[:-1]
        spectra, spectra_rows = _on_rows(_interleaved(spectra), batch)
        terms, terms_rows = _on_rows(terms, batch)
        widths = [width, *(w.shape[-1] for w in hidden_weights_t)]
        module.conv_forward(
            keep,
            z.reshape(-1, z.shape[-1]),
            spectra,
            spectra_rows,
            dfts,
            reads,
            terms,
            terms_rows,
            hidden_weights_t,
            hidden_biases,
            last_t,
            last_bias,
            idft_half,
            alpha,
            half_multiplicity,
            [_stack_rows(x) for x in stored],
            swaps,
            widths,
            min_magnitude,
            coupling_log_det.view(-1),
            gate_log_det.view(-1),
        )

    def backward(gate_grads, g_0, through_gate_log_det, slope, to_spectrum, through_log_det, *rest) -> None:
        rise_per_magnitude, to_input, output_grads, last, errors, masks, hidden_weights, read_grads, *rest = rest
        reads_t, y_grads, spectra_conj, dft_t, idft_half_t, swaps, n_half, f_half, width = rest
        batch = g_0.shape[:-1]
        spectra_conj, spectra_rows = _on_rows(_interleaved(spectra_conj), batch)
        stacks = [gate_grads, through_gate_log_det, slope, _interleaved(to_spectrum), through_log_det]
        stacks += [rise_per_magnitude, _interleaved(to_input), output_grads, read_grads, y_grads]
        gate_grads, through_gate_log_det, slope, to_spectrum, through_log_det, *stacks = map(_stack_rows, stacks)
        rise_per_magnitude, to_input, output_grads, read_grads, y_grads = stacks
        module.conv_backward(
            gate_grads,
            g_0.view(-1, g_0.shape[-1]),
            through_gate_log_det,
            slope,
            to_spectrum,
            through_log_det,
            rise_per_magnitude,
            to_input,
            output_grads,
            last,
            [_stack_rows(e) for e in errors[1:]],
            [_stack_rows(m) for m in masks],
            hidden_weights,
            read_grads,
            reads_t,
            y_grads,
            spectra_conj,
            spectra_rows,
            dft_t,
            idft_half_t,
            swaps,
            [width, *(w.shape[1] for w in hidden_weights)],
        )

    return SimpleNamespace(forward=forward, backward=backward)


PYTHON_LOOPS = SimpleNamespace(forward=python_forward, backward=python_backward)


def block_loops(like: Tensor) -> SimpleNamespace:
    """The loops to run on tensors like ``like``: the compiled ones when built and allowed for them
    (``nf.flows.native``), else the Python ones."""
    compiled = native.loops(like)
    return PYTHON_LOOPS if compiled is None else _compiled_loops(compiled)
