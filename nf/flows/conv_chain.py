"""The convolutional flow as one autograd node with a hand-written backward (same maths, fewer operations).

The reference flow (``make_flow("conv", ...)``) is a ``FlowSequence`` of ``K``
blocks, each a circular convolution, a convolutional coupling and a
``LogGate`` (``nf.flows.circular``, ``nf.flows.conv_coupling``).  Layer by
layer, autograd records about thirty tiny operations per block and replays
them backwards.  Here:

* everything that does not depend on the running sample is computed for all
  ``K`` blocks at once, outside the loop: the circular convolutions' spectra
  and log-determinants (from ``params`` or the chain's stacked spectra), the
  couplings' context terms ``W_c c_k + b_1``, the gates' ``alpha_k``;
* the real FFTs of length ``n = D`` and ``n = D / 2`` are dense products with
  fixed matrices (at these sizes a small matrix product is cheaper than an FFT
  call), with real and imaginary parts interleaved so that a complex view
  costs nothing.  For a spectrum ``Y_k``, ``k = 0 .. n // 2``, and ``m_k`` the
  multiplicity of frequency ``k`` (1 at frequency 0 and Nyquist, else 2):

      rfft:   Re Z_k = sum_i z_i cos(2 pi k i / n),   Im Z_k = -sum_i z_i sin(2 pi k i / n),
      irfft:  y_i = (1 / n) sum_k m_k (Re Y_k cos(2 pi k i / n) - Im Y_k sin(2 pi k i / n));

* after block ``k``'s circular convolution ``Y = S_k rfft(z)``, one product
  of ``Y`` with a matrix ``R_k`` gives what the coupling reads: ``rfft(x_B)``
  (``irfft`` then ``rfft`` of the updated half), ``x_A`` and the coupling
  network's first-layer product ``x_A W_k'``; the backward pass goes back
  through ``R_k'`` in one product too;
* the gate's ``1 / alpha_k`` is folded into the next block's ``rfft`` matrix
  (``z_k A = (sign(x) ln(1 + alpha_k|x|)) diag(1 / alpha_k) A``), so only the
  last block multiplies by it;
* the couplings' constant offset ``c`` of the magnitudes and the mask of the
  real frequencies' phases are folded into their output layers, so the network
  emits ``a_k + c`` and the masked phases directly;
* the loop over blocks is one autograd node (``_ConvLoop``): its forward pass
  stores what each block computed (among it ``Y = S_k rfft(z)``, the
  coupling's kernel ``W`` and ``W rfft(x_B)``) in tensors stacked over blocks, and its
  backward pass runs only the recursion on ``dL/dz`` block by block; the
  pointwise factors it needs and all weight gradients are computed for all
  blocks at once, before and after that recursion.

Backward rules, with the convention of complex gradients ``dL/dRe + i dL/dIm``:
for ``Y = W Z``, ``dL/dZ = dL/dY conj(W)`` and ``dL/dW = dL/dY conj(Z)``; for
``W = |W| e^{i phi}``, ``dL/d|W| = Re(dL/dW e^{-i phi})`` and ``dL/dphi =
|W| Im(dL/dW e^{-i phi})``, that is ``dL/d|W| = Re(q) / |W|`` and ``dL/dphi =
Im(q)`` for ``q = dL/dW conj(W) = dL/dY conj(Y)``: the backward pass needs the
stored products ``Y``, not the phases or the inputs ``Z`` (the same holds for
the circular spectra ``S_k``); ``|W| = eps + softplus(s)`` has slope
``sigmoid(s)``; the gate ``y = sign(z) ln(1 + alpha|z|) / alpha`` has
``dy/dz = 1 / (1 + alpha|z|)`` and ``dy/dalpha = sign(z) (|z| / (1 +
alpha|z|) - y sign(z)) / alpha``, and its log-determinant ``-sum ln(1 +
alpha|z|)`` has ``d/dz = -alpha sign(z) / (1 + alpha|z|)`` and ``d/dalpha =
-|z| / (1 + alpha|z|)``.

``ConvChain(flow)`` copies the reference flow's weights into stacks over
blocks (``StackedParameters``: the circular spectra when global, the coupling
networks, the gates' ``alpha``); ``reference()`` gives the layer-by-layer flow
back, with the chain's current weights (``inverse`` runs through it).  Tested
against it in float64 to 1e-10.  The dense transforms' fixed matrices are
rounded to the dtype the chain is built in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from nf.flows.base import FlowSequence
from nf.flows.circular import MIN_MAGNITUDE, UNIT_OFFSET, CircularConvolution, SpectrumLayout
from nf.flows.conv_coupling import ConvolutionalCoupling, LogGate
from nf.flows.coupling_chain import layer_rows, layer_weight_grad, relu_masks, right_operands
from nf.flows.stacked import FusedChain, StackedParameters


def real_dft_matrices(layout: SpectrumLayout) -> tuple[Tensor, Tensor]:
    """Float64 ``(A, B)`` with ``z @ A = rfft(z)`` and ``Y @ B = irfft(Y)``, real and imaginary parts interleaved.

    ``A`` is ``(n, 2 f)`` and ``B`` is ``(2 f, n)`` for ``f = n // 2 + 1`` frequencies (module docstring).
    """
    n = layout.n
    k, i = torch.arange(layout.n_freq).unsqueeze(0), torch.arange(n).unsqueeze(1)
    angle = (2 * math.pi / n) * torch.remainder(k * i, n).double()  # (n, f), exact multiples of 2 pi / n
    forward = torch.stack([torch.cos(angle), -torch.sin(angle)], dim=-1).reshape(n, 2 * layout.n_freq)
    weight = (layout.multiplicity.double() / n).unsqueeze(0)
    inverse = torch.stack([weight * torch.cos(angle), -weight * torch.sin(angle)], dim=-1)
    return forward, inverse.reshape(n, 2 * layout.n_freq).T.contiguous()


def _complex(x: Tensor) -> Tensor:
    """Interleaved ``(..., 2 f)`` real numbers as ``(..., f)`` complex ones (a view)."""
    return torch.view_as_complex(x.unflatten(-1, (-1, 2)))


def _interleaved(x: Tensor) -> Tensor:
    """``(..., f)`` complex numbers as ``(..., 2 f)`` interleaved real ones (a view)."""
    return torch.view_as_real(x).flatten(-2)


def _polar(magnitude: Tensor, phase: Tensor) -> Tensor:
    """``magnitude e^{i phase}``, as ``torch.polar`` but from vectorised ``cos`` and ``sin``: measured three times
    faster on CPU (PyTorch 2.14) for the spectra of all blocks at once."""
    return torch.complex(torch.cos(phase).mul_(magnitude), torch.sin(phase).mul_(magnitude))


def _read_layout(f_half: int, n_half: int, width: int) -> tuple[slice, slice, slice]:
    """Where ``Y R_k`` keeps ``rfft(x_B)`` (``f_half`` interleaved frequencies), ``x_A`` (``n_half`` numbers) and
    the coupling network's first-layer product (``width`` numbers); a padding column may follow."""
    start = 2 * f_half + n_half
    return slice(None, 2 * f_half), slice(2 * f_half, start), slice(start, start + width)


def _thirds(f_half: int) -> tuple[slice, slice, slice]:
    """Where a coupling network's output ``(a + c, phi, t)`` keeps each part (``f_half`` frequencies each)."""
    return slice(None, f_half), slice(f_half, 2 * f_half), slice(2 * f_half, None)


def _oriented(first: list[Tensor], second: list[Tensor], swaps: list[bool]) -> list[tuple[Tensor, Tensor]]:
    """``(A, B)`` per block from its first and second halves: the conditioning half first, the updated one second."""
    return [(b, a) if swap else (a, b) for a, b, swap in zip(first, second, swaps)]


def _per_block_tuples(stacks: Sequence[Tensor], n_blocks: int) -> list[tuple[Tensor, ...]]:
    """Block ``k``'s slices of several ``(K, ...)`` stacks, as one tuple per block (empty tuples for no stacks)."""
    return list(zip(*(x.unbind(0) for x in stacks))) if stacks else [()] * n_blocks


class ConvChain(FusedChain):
    """The convolutional flow (``make_flow("conv", ...)``) with a fused forward pass (module docstring).

    Args:
        flow: the reference flow, ``K`` blocks of ``CircularConvolution``, ``ConvolutionalCoupling`` and ``LogGate``
            on an even dimension; copied, not shared.

    Example::

        chain = ConvChain(make_flow("conv", 40, 20, amortized=True))
        z_k, log_det = chain(z0, params)   # the numbers of the reference flow, faster
    """

    def __init__(self, flow: FlowSequence):
        super().__init__()
        self._keep_reference(flow)
        layers = list(flow.layers)
        circulars, couplings, gates = layers[0::3], layers[1::3], layers[2::3]
        if (
            len(layers) % 3
            or not all(isinstance(layer, CircularConvolution) for layer in circulars)
            or not all(isinstance(layer, ConvolutionalCoupling) for layer in couplings)
            or not all(isinstance(layer, LogGate) for layer in gates)
        ):
            raise ValueError("ConvChain needs blocks of a circular convolution, a convolutional coupling and a LogGate")
        if self.dim % 2:
            raise ValueError(f"ConvChain needs an even dimension (equal coupling halves), got dim={self.dim}")
        if len({layer.amortized for layer in circulars}) != 1 or len({c.n_params for c in couplings}) != 1:
            raise ValueError("ConvChain needs every block amortised alike")
        networks = [list(c.network) for c in couplings]
        if len({tuple(p.shape for p in c.network.parameters()) for c in couplings}) != 1 or len(networks[0]) < 3:
            raise ValueError("ConvChain needs coupling networks of one shape, with a hidden layer")
        if not all(isinstance(m, nn.ReLU) for n in networks for m in n[1::2]):
            raise ValueError(
                "ConvChain needs coupling networks with ReLU activations (its backward is written for them)"
            )
        self.context, self.circular_params = couplings[0].n_params, circulars[0].n_params
        self.swaps = [c.swap for c in couplings]
        self.linear = list(range(0, len(networks[0]), 2))  # where the linear layers of the coupling networks sit
        self.spectra = None if self.circular_params else StackedParameters(circulars)  # global spectra, if any
        self.networks = StackedParameters([c.network for c in couplings])
        self.gates = StackedParameters(gates)
        full, half = circulars[0].layout, couplings[0].layout
        self.n_freq = full.n_freq
        n_half, f_half = self.dim // 2, half.n_freq
        # the output layers emit (a + c, phase * mask, t): an offset and a row mask folded into them
        offset = torch.cat([torch.full((f_half,), UNIT_OFFSET), torch.zeros(f_half + n_half)])
        rows = torch.cat([torch.ones(f_half), half.free_phase, torch.ones(n_half)])
        # after the circular convolution's product Y = S_k rfft(z): rfft(x_B) and x_A, per swap (module docstring)
        (dft, idft), (dft_half, idft_half) = real_dft_matrices(full), real_dft_matrices(half)
        halves = [(slice(None, n_half), slice(n_half, None)), (slice(n_half, None), slice(None, n_half))]  # (A, B)
        reads = [torch.cat([idft[:, b] @ dft_half, idft[:, a]], dim=-1) for a, b in halves]
        like = self.networks["0.weight"]
        for name, value in (
            ("_dft", dft),
            ("_idft_half", idft_half),
            ("_reads", torch.stack(reads)),
            ("_read_a", torch.stack([idft[:, a] for a, _ in halves])),
            ("_offset", offset),
            ("_row_mask", rows),
            ("_half_multiplicity", half.multiplicity),
            ("_multiplicity", full.multiplicity),
            ("_free_phase", full.free_phase),
        ):
            self.register_buffer(name, value.to(like.device, like.dtype), persistent=False)
        self.register_buffer("_swaps", torch.tensor(self.swaps).long(), persistent=False)

    def _copy_weights_to(self, flow: FlowSequence) -> None:
        """Into a copy of the reference flow: the global spectra (if any), the coupling networks and the gates."""
        layers = list(flow.layers)
        if self.spectra is not None:
            self.spectra.copy_to(layers[0::3])
        self.networks.copy_to([layer.network for layer in layers[1::3]])
        self.gates.copy_to(layers[2::3])

    def _circular_parameters(self, params: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The circular convolutions' raw magnitudes and phases ``(..., K, f)`` and the per-block contexts
        ``(..., K, C)`` (None without context)."""
        n_freq, n_blocks = self.n_freq, len(self.swaps)
        circular, context = None, None
        if params is not None:
            per_block = params.unflatten(-1, (n_blocks, self.circular_params + self.context))
            circular, context = per_block.split([self.circular_params, self.context], dim=-1)
        if self.circular_params:
            raw, phase = circular.split([n_freq, n_freq], dim=-1)
        else:  # global spectra: the chain's stacks
            raw, phase = self.spectra["log_magnitude"], self.spectra["phase"]
        return raw, phase, context if self.context else None

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        if z.dim() == 1 and (params is None or params.dim() == 1):  # one sample: as a batch of one
            z_k, log_det = self.forward(z[None], None if params is None else params[None])
            return z_k[0], log_det[0]
        raw, phase, context = self._circular_parameters(params)
        out = self.linear[-1]
        first_bias = self.networks["0.bias"]
        width = first_bias.shape[-1]
        w_z, w_c = self.networks["0.weight"].split([self.dim // 2, self.context], dim=-1)  # (K, H, D/2), (K, H, C)
        if context is None:
            terms = first_bias
        else:  # (K, ..., H): block k's terms are one contiguous slice
            terms = torch.einsum("...kc,khc->k...h", context, w_c) + first_bias.view(
                -1, *[1] * (context.dim() - 2), width
            )
        hidden = [self.networks[f"{j}.{kind}"] for j in self.linear[1:-1] for kind in ("weight", "bias")]
        last = self.networks[f"{out}.weight"] * self._row_mask.unsqueeze(-1)
        last_bias = self.networks[f"{out}.bias"] * self._row_mask + self._offset
        alpha = F.softplus(self.gates["raw_alpha"])  # LogGate.alpha() of every gate at once
        return _ConvLoop.apply(
            self, torch.is_grad_enabled(), z, raw, phase, alpha, terms, w_z, last, last_bias, *hidden
        )


class _ConvLoop(torch.autograd.Function):
    """``(z_0, circular spectra, alpha, context terms, coupling weights) -> (z_K, sum of log-determinants)``.

    Per block ``k`` (module docstring): ``Y = S_k rfft(z)``; one product of ``Y`` with ``R_k = [irfft then rfft of
    the B half | irfft to the A half | irfft to the A half then W_k']`` gives ``rfft(x_B)``, ``x_A`` and the first
    layer's ``x_A W_k'`` of the coupling network; ``h_0 = relu(x_A W_k' + u_k)`` (``u_k = W_c c_k + b_1``, the
    context term), ``h_j = relu(h_{j-1} V_jk' + c_jk)``, ``o = h_J L_k' + l_k = (s, phi, t)``;
    ``x_B <- irfft(W rfft(x_B)) + t`` with ``W = (eps + softplus(s)) e^{i phi}``;
    ``z = sign(x) ln(1 + alpha_k|x|) / alpha_k`` (its ``1 / alpha_k`` taken by block ``k + 1``'s ``rfft`` matrix).
    The backward pass runs, block by block, only the recursion on ``dL/dz`` (through ``R_k'`` in one product); the
    circular spectra's ``q_k = dL/dS_k conj(S_k) = dL/dY conj(Y)`` waits for the end, for all blocks at once; first
    derivatives only.  Every per-block tensor (inputs, stored results, buffers) is a view made once, before the
    loop, so each block costs only its arithmetic.
    """

    @staticmethod
    def forward(
        ctx,
        chain: ConvChain,
        keep: bool,
        z: Tensor,
        raw_circular: Tensor,
        phase_circular: Tensor,
        alpha: Tensor,
        terms: Tensor,
        w_z: Tensor,
        last: Tensor,
        last_bias: Tensor,
        *hidden: Tensor,
    ) -> tuple[Tensor, Tensor]:
        n_blocks, n_half, f_half = w_z.shape[0], chain.dim // 2, chain._half_multiplicity.shape[0]
        # the circular convolutions' spectra S_k = |S_k| e^{i phi_k} of all blocks, and their log-determinants
        circular_magnitude = MIN_MAGNITUDE + F.softplus(raw_circular + UNIT_OFFSET)
        spectra = _polar(circular_magnitude, phase_circular * chain._free_phase)
        circular_log_det = (torch.log(circular_magnitude) @ chain._multiplicity).sum(-1)
        batch = torch.broadcast_shapes(z.shape[:-1], spectra.shape[:-2], terms.shape[1:-1])
        widths = [w_z.shape[1], *(w.shape[1] for w in hidden[0::2])]
        z_shape, z = z.shape, z.expand(*batch, chain.dim)
        terms_shape, terms = terms.shape, terms.view(n_blocks, *[1] * (len(batch) + 2 - terms.dim()), *terms.shape[1:])
        # R_k, (K, 2f, 2 f_B + D/2 + H [+ 1]): padded to an even width, so that rfft(x_B) has a complex view
        first = torch.bmm(chain._read_a[chain._swaps], w_z.transpose(1, 2))
        reads = torch.cat([chain._reads[chain._swaps], first], dim=-1)
        reads = F.pad(reads, (0, reads.shape[-1] % 2))
        # each block's rfft matrix: the first block's plain, the others' after the previous gate's 1 / alpha
        inverse_alpha = 1 / alpha
        dfts = torch.cat([chain._dft[None], inverse_alpha[:-1, :, None] * chain._dft], dim=0)

        def stacked(width: int) -> Tensor:  # one slot per block; without gradients one slot reused by every block
            return z.new_empty(n_blocks if keep else 1, *batch, width)

        def per_block(x: Tensor) -> list[Tensor]:
            return list(x.unbind(0)) if keep else [x[0]] * n_blocks

        # per block: Y, what R_k reads, the gate's input, ln(1 + alpha|x|) and the gate's output before 1 / alpha
        convolved, read, gate_in = stacked(2 * spectra.shape[-1]), stacked(reads.shape[-1]), stacked(chain.dim)
        levels, signed = stacked(chain.dim), stacked(chain.dim)
        # the coupling network's output, |W|, W and W rfft(x_B) (complex numbers interleaved)
        outputs, magnitudes, kernels, products = (
            stacked(last.shape[1]),
            stacked(f_half),
            stacked(2 * f_half),
            stacked(2 * f_half),
        )
        at_h_in, at_x_a, at_first = _read_layout(f_half, n_half, widths[0])
        activations = [read[..., at_first]]
        activations += [stacked(w) for w in widths[1:]]
        spectrum = z.new_empty(*batch, 2 * spectra.shape[-1])  # rfft(z), reused by every block
        spectrum_c = _complex(spectrum)
        circular = zip(per_block(convolved), per_block(_complex(convolved)), spectra.unbind(-2), dfts.unbind(0))
        network = zip(
            per_block(read),
            per_block(read[..., at_x_a]),
            reads.unbind(0),
            terms.unbind(0),
            zip(*(per_block(h) for h in activations)),
            _per_block_tuples([w.transpose(1, 2).contiguous() for w in hidden[0::2]], n_blocks),
            _per_block_tuples(hidden[1::2], n_blocks),
            per_block(outputs),
            right_operands(last),
            last_bias.unbind(0),
        )
        spectral = zip(
            zip(*(per_block(outputs[..., at]) for at in _thirds(f_half))),
            per_block(magnitudes),
            per_block(_complex(kernels)),
            per_block(_complex(products)),
            per_block(products),
            per_block(_complex(read[..., at_h_in])),
        )
        gates = zip(
            _oriented(per_block(gate_in[..., :n_half]), per_block(gate_in[..., n_half:]), chain.swaps),
            per_block(gate_in),
            per_block(levels),
            per_block(signed),
            alpha.unbind(0),
        )
        idft_half = chain._idft_half
        coupling_log_det, gate_log_det = z.new_zeros(batch), z.new_zeros(batch)
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
            torch.add(F.softplus(raw.contiguous()), MIN_MAGNITUDE, out=magnitude)  # contiguous: measured faster
            torch.polar(magnitude, phase, out=kernel_c)
            torch.mul(h_in_c, kernel_c, out=product_c)
            torch.matmul(product, idft_half, out=gate_b).add_(shift)
            gate_a.copy_(x_a)
            # gate: z = sign(x) ln(1 + alpha |x|) / alpha, the 1 / alpha left to the next block's rfft matrix
            torch.log1p(torch.abs(gate, out=level).mul_(a), out=level)
            z = torch.copysign(level, gate, out=sign_level)
            if not keep:
                coupling_log_det += torch.log(magnitude) @ chain._half_multiplicity
                gate_log_det -= level.sum(-1)
        z = z * inverse_alpha[-1]
        if keep:
            coupling_log_det = (torch.log(magnitudes) @ chain._half_multiplicity).sum(0)
            gate_log_det = -levels.sum((0, -1))
            ctx.save_for_backward(
                raw_circular,
                circular_magnitude,
                spectra,
                alpha,
                w_z,
                reads,
                last,
                *hidden,
                convolved,
                read,
                gate_in,
                levels,
                signed,
                outputs,
                magnitudes,
                kernels,
                products,
                *activations[1:],
            )
            ctx.chain, ctx.depth = chain, len(widths)
            ctx.shapes = (z_shape, phase_circular.shape, terms_shape, terms.shape)
        return z, circular_log_det + coupling_log_det + gate_log_det

    @staticmethod
    @once_differentiable  # the backward writes into buffers (out=): it cannot itself be differentiated
    def backward(ctx, grad_z: Tensor, grad_log_det: Tensor) -> tuple[Tensor | None, ...]:
        chain, depth, (z_shape, phase_shape, terms_shape, padded_terms_shape) = ctx.chain, ctx.depth, ctx.shapes
        raw_circular, circular_magnitude, spectra, alpha, w_z, reads, last, *rest = ctx.saved_tensors
        hidden, rest = rest[: 2 * (depth - 1)], rest[2 * (depth - 1) :]
        convolved, read, gate_in, levels, signed, outputs, magnitude, kernels, products, *deeper = rest
        n_blocks, n_half, f_half, width = w_z.shape[0], chain.dim // 2, chain._half_multiplicity.shape[0], w_z.shape[1]
        batch = gate_in.shape[1:-1]
        g_l = grad_log_det.unsqueeze(-1)  # (..., 1)
        at_h_in, at_x_a, at_first = _read_layout(f_half, n_half, width)
        activations = [read[..., at_first], *deeper]

        # the pointwise factors of every block at once
        a = alpha.view(n_blocks, *[1] * len(batch), chain.dim)
        slope = torch.exp(-levels)  # 1 / (1 + alpha |x|): the gate's dz/dx
        through_gate_log_det = torch.copysign(slope, gate_in).mul_(a).mul_(-g_l)  # -alpha sign(x) / (1 + alpha|x|)
        rise_per_magnitude = torch.sigmoid(outputs[..., :f_half].contiguous()).div_(magnitude)  # (d|W|/ds) / |W|
        through_log_det = rise_per_magnitude * (g_l * chain._half_multiplicity)
        to_spectrum = torch.conj_physical(_complex(products))  # dL/dW e^{-i phi} = dL/dY conj(W rfft(x_B)) / |W|
        to_input = torch.conj_physical(_complex(kernels))  # dL/drfft(x_B) = dL/dY conj(W)
        spectra_conj = torch.conj_physical(spectra)

        gate_grads = grad_z.new_empty(gate_in.shape)  # dL/dz after block k
        gate_grads[-1] = grad_z
        output_grads = grad_z.new_empty(outputs.shape)  # dL/do of block k
        read_grads = grad_z.new_empty(read.shape)  # dL/d(rfft(x_B), x_A, x_A W_k'), and a padding column of 0
        read_grads[..., at_first.stop :].zero_()
        errors = [read_grads[..., at_first], *(grad_z.new_empty(h.shape) for h in deeper)]
        y_grads = torch.empty_like(convolved)  # dL/dY of block k
        g_0 = grad_z.new_empty(*batch, chain.dim)  # dL/dz_0
        # buffers reused by every block, with their complex or interleaved views made once
        g_x, g_y_half = grad_z.new_empty(*batch, chain.dim), grad_z.new_empty(*batch, 2 * f_half)
        g_y_half_c = _complex(g_y_half)
        rotated, g_z = torch.empty_like(g_y_half_c), torch.empty_like(_complex(convolved[0]))
        rotated_re, rotated_im, g_z_r = rotated.real, rotated.imag, _interleaved(g_z)
        masks = [relu_masks(h) for h in activations]
        gate = zip(
            gate_grads.unbind(0), [g_0, *gate_grads.unbind(0)[:-1]], through_gate_log_det.unbind(0), slope.unbind(0)
        )
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
            _per_block_tuples(hidden[0::2], n_blocks),
            read_grads.unbind(0),
            _complex(read_grads[..., at_h_in]).unbind(0),
            read_grads[..., at_x_a].unbind(0),
            right_operands(reads),
        )
        circular = zip(y_grads.unbind(0), _complex(y_grads).unbind(0), spectra_conj.unbind(-2))
        parts = _oriented([g_x[..., :n_half]] * n_blocks, [g_x[..., n_half:]] * n_blocks, chain.swaps)
        dft_t, idft_half_t = chain._dft.T.contiguous(), chain._idft_half.T.contiguous()
        blocks = list(zip(gate, parts, spectral, network, circular))
        for gate_views, (g_x_a, g_x_b), spectral_views, net, circular_views in reversed(blocks):
            g, g_before, via_log_det, gate_slope = gate_views
            to_w, (g_raw, g_phase, g_shift), via_magnitude, rise_k, to_z = spectral_views
            g_o, w_o, es, ms, ws, g_r, g_h_in, g_x_a_read, reads_t = net
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
            torch.matmul(g_r, reads_t, out=g_y)
            torch.mul(g_y_c, spectrum_conj, out=g_z)
            torch.matmul(g_z_r, dft_t, out=g_before)

        # the circular convolutions, every block at once: q = dL/dS conj(S) = dL/dY conj(Y) gives
        # dL/d|S| = Re(q) / |S| and dL/dphi = Im(q) (module docstring)
        q = (_complex(y_grads) * torch.conj_physical(_complex(convolved))).movedim(0, -2).sum_to_size(spectra.shape)
        g_circular_log_det = grad_log_det.sum_to_size(spectra.shape[:-2])[..., None, None]
        g_raw_circular = (q.real + g_circular_log_det * chain._multiplicity).div_(circular_magnitude)
        g_raw_circular *= torch.sigmoid(raw_circular + UNIT_OFFSET)
        g_phase_circular = q.imag * chain._free_phase

        # the gates: dL/dalpha = sum over the batch of dL/dz (x / (1 + alpha|x|) - z) / alpha - dL/dlogdet |x| /
        # (1 + alpha|x|), with z = sign(x) ln(1 + alpha|x|) / alpha
        shrunk = gate_in * slope  # x / (1 + alpha|x|)
        g_alpha = layer_rows(gate_grads * torch.addcdiv(shrunk, signed, a, value=-1)).sum(1) / alpha
        g_alpha -= layer_rows(shrunk.abs_().mul_(g_l)).sum(1)
        hidden_grads = []
        for j in range(depth - 1):
            hidden_grads += [layer_weight_grad(errors[j + 1], activations[j]), layer_rows(errors[j + 1]).sum(1)]
        return (
            None,
            None,
            g_0.sum_to_size(z_shape),
            g_raw_circular.sum_to_size(raw_circular.shape),
            g_phase_circular.sum_to_size(phase_shape),
            g_alpha,
            errors[0].sum_to_size(padded_terms_shape).view(terms_shape),
            layer_weight_grad(errors[0], read[..., at_x_a]),
            layer_weight_grad(output_grads, activations[-1]),
            layer_rows(output_grads).sum(1),
            *hidden_grads,
        )
