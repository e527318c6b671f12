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
  blocks at once, before and after that recursion;
* the loop and the recursion run compiled where a C++ compiler is found
  (``nf.flows.native``), else in Python (``nf.flows.conv_loops``, their
  reference).

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

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from nf.flows.base import FlowSequence
from nf.flows.circular import MIN_MAGNITUDE, UNIT_OFFSET, CircularConvolution, SpectrumLayout
from nf.flows.conv_coupling import ConvolutionalCoupling, LogGate
from nf.flows.conv_loops import block_loops, complex_view, read_layout
from nf.flows.coupling_chain import aligned_shape, layer_rows, layer_weight_grad, relu_masks, right_operand
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


def _blocks_first(spectra: Tensor, batch: torch.Size) -> Tensor:
    """``(..., K, f)`` spectra as ``(K, ..., f)``, their batch dimensions lined up with ``batch``'s."""
    x = spectra.movedim(-2, 0)
    return x.view(aligned_shape(x.shape, batch))


def _polar(magnitude: Tensor, phase: Tensor) -> Tensor:
    """``magnitude e^{i phase}``, as ``torch.polar`` but from vectorised ``cos`` and ``sin``: measured three times
    faster on CPU (PyTorch 2.14) for the spectra of all blocks at once."""
    return torch.complex(torch.cos(phase).mul_(magnitude), torch.sin(phase).mul_(magnitude))


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
            ("_dft_t", dft.T.contiguous()),
            ("_idft_half", idft_half),
            ("_idft_half_t", idft_half.T.contiguous()),
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
    derivatives only.  The loop and the recursion are ``nf.flows.conv_loops``' (compiled, or in Python).
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
        terms_shape, terms = terms.shape, terms.view(aligned_shape(terms.shape, batch))
        # R_k, (K, 2f, 2 f_B + D/2 + H [+ 1]): padded to an even width, so that rfft(x_B) has a complex view
        first = torch.bmm(chain._read_a[chain._swaps], w_z.transpose(1, 2))
        reads = torch.cat([chain._reads[chain._swaps], first], dim=-1)
        reads = F.pad(reads, (0, reads.shape[-1] % 2))
        # each block's rfft matrix: the first block's plain, the others' after the previous gate's 1 / alpha
        inverse_alpha = 1 / alpha
        dfts = torch.cat([chain._dft[None], inverse_alpha[:-1, :, None] * chain._dft], dim=0)

        def stacked(width: int) -> Tensor:  # one slot per block; without gradients one slot reused by every block
            return z.new_empty(n_blocks if keep else 1, *batch, width)

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
        deeper = [stacked(w) for w in widths[1:]]  # the coupling network's activations after the first layer's
        stored = [convolved, read, gate_in, levels, signed, outputs, magnitudes, kernels, products, *deeper]
        coupling_log_det, gate_log_det = z.new_zeros(batch), z.new_zeros(batch)
        block_loops(z).forward(
            keep,
            z,
            _blocks_first(spectra, batch),
            dfts,
            reads,
            terms,
            [right_operand(w) for w in hidden[0::2]],
            list(hidden[1::2]),
            right_operand(last),
            last_bias,
            chain._idft_half,
            alpha,
            chain._half_multiplicity,
            stored,
            chain.swaps,
            n_half,
            f_half,
            widths[0],
            MIN_MAGNITUDE,
            coupling_log_det,
            gate_log_det,
        )
        z = signed[-1] * inverse_alpha[-1]
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
                *stored,
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
        _, at_x_a, at_first = read_layout(f_half, n_half, width)
        activations = [read[..., at_first], *deeper]

        # the pointwise factors of every block at once
        a = alpha.view(n_blocks, *[1] * len(batch), chain.dim)
        slope = torch.exp(-levels)  # 1 / (1 + alpha |x|): the gate's dz/dx
        through_gate_log_det = torch.copysign(slope, gate_in).mul_(a).mul_(-g_l)  # -alpha sign(x) / (1 + alpha|x|)
        rise_per_magnitude = torch.sigmoid(outputs[..., :f_half].contiguous()).div_(magnitude)  # (d|W|/ds) / |W|
        through_log_det = rise_per_magnitude * (g_l * chain._half_multiplicity)
        to_spectrum = torch.conj_physical(complex_view(products))  # dL/dW e^{-i phi} = dL/dY conj(W rfft(x_B)) / |W|
        to_input = torch.conj_physical(complex_view(kernels))  # dL/drfft(x_B) = dL/dY conj(W)
        spectra_conj = torch.conj_physical(spectra)

        gate_grads = grad_z.new_empty(gate_in.shape)  # dL/dz after block k
        gate_grads[-1] = grad_z
        output_grads = grad_z.new_empty(outputs.shape)  # dL/do of block k
        read_grads = grad_z.new_empty(read.shape)  # dL/d(rfft(x_B), x_A, x_A W_k'), and a padding column of 0
        read_grads[..., at_first.stop :].zero_()
        errors = [read_grads[..., at_first], *(grad_z.new_empty(h.shape) for h in deeper)]
        y_grads = torch.empty_like(convolved)  # dL/dY of block k
        g_0 = grad_z.new_empty(*batch, chain.dim)  # dL/dz_0
        block_loops(grad_z).backward(
            gate_grads,
            g_0,
            through_gate_log_det,
            slope,
            to_spectrum,
            through_log_det,
            rise_per_magnitude,
            to_input,
            output_grads,
            last,
            errors,
            [relu_masks(h) for h in activations],
            list(hidden[0::2]),
            read_grads,
            right_operand(reads),
            y_grads,
            _blocks_first(spectra_conj, batch),
            chain._dft_t,
            chain._idft_half_t,
            chain.swaps,
            n_half,
            f_half,
            width,
        )

        # the circular convolutions, every block at once: q = dL/dS conj(S) = dL/dY conj(Y) gives
        # dL/d|S| = Re(q) / |S| and dL/dphi = Im(q) (module docstring)
        q = complex_view(y_grads) * torch.conj_physical(complex_view(convolved))
        q = q.movedim(0, -2).sum_to_size(spectra.shape)
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
