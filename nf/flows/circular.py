"""Invertible circular convolution (Karami et al., "Invertible Convolutional Flow", NeurIPS 2019).

    y = w (*) z,   y_i = sum_j w_j z_{(i - j) mod D}

is multiplication by a circulant matrix, which the discrete Fourier transform
diagonalises: ``Y_k = W_k Z_k``.  Hence, in O(D log D) with real FFTs,

    y = irfft(W * rfft(z)),   z = irfft(rfft(y) / W),   ln|det| = sum_{k=0}^{D-1} ln|W_k|.

The kernel is parametrised by its spectrum, so that it is real and every
``|W_k|`` stays away from zero: for the ``D // 2 + 1`` non-redundant
frequencies, ``|W_k| = eps + softplus(a_k + c)`` (``c`` makes ``a = 0`` give
``|W_k| = 1``) and, except at frequency 0 and (for even ``D``) the Nyquist
frequency where a real kernel's spectrum is real, a free phase ``phi_k``.
The full-spectrum sum counts each non-redundant frequency once or twice (its
conjugate twin):

    ln|det| = ln|W_0| + 2 sum_{0<k<D/2} ln|W_k| + [D even] ln|W_{D/2}|.

Everything stays in the autograd graph: the log-determinant is a
differentiable tensor, never a Python number.  The functions below are shared
with the data-adaptive convolutional coupling (``nf.flows.conv_coupling``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nf.flows.base import FlowLayer

MIN_MAGNITUDE = 1e-3
UNIT_OFFSET = math.log(math.expm1(1.0 - MIN_MAGNITUDE))  # MIN_MAGNITUDE + softplus(UNIT_OFFSET) = 1


class SpectrumLayout(nn.Module):
    """Which of the ``n // 2 + 1`` real-FFT frequencies of a length-``n`` signal are real, and their multiplicity."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.n_freq = n // 2 + 1
        multiplicity = torch.full((self.n_freq,), 2.0)
        real = torch.zeros(self.n_freq, dtype=torch.bool)
        multiplicity[0], real[0] = 1.0, True
        if n % 2 == 0:
            multiplicity[-1], real[-1] = 1.0, True
        self.register_buffer("multiplicity", multiplicity)
        self.register_buffer("real_frequency", real)
        # 0 at the real frequencies, 1 elsewhere: the phase mask, derived (not saved with the state)
        self.register_buffer("free_phase", (~real).float(), persistent=False)

    def magnitude(self, raw_magnitude: Tensor) -> Tensor:
        """``|W_k| = eps + softplus(a_k + c)``, at least ``MIN_MAGNITUDE``; ``a = 0`` gives 1."""
        return MIN_MAGNITUDE + F.softplus(raw_magnitude + UNIT_OFFSET)

    def spectrum(self, raw_magnitude: Tensor, phase: Tensor) -> Tensor:
        """Complex ``W_k`` for ``k = 0 .. n // 2``, real at frequency 0 and Nyquist."""
        return self.spectrum_of(self.magnitude(raw_magnitude), phase)

    def spectrum_of(self, magnitude: Tensor, phase: Tensor) -> Tensor:
        """``spectrum`` from the magnitudes ``|W_k|`` already computed."""
        return torch.polar(magnitude, phase * self.free_phase)

    def log_abs_det(self, raw_magnitude: Tensor) -> Tensor:
        """``sum_{k=0}^{n-1} ln|W_k|`` over the full spectrum (conjugate twins counted)."""
        return self.log_abs_det_of(self.magnitude(raw_magnitude))

    def log_abs_det_of(self, magnitude: Tensor) -> Tensor:
        """``log_abs_det`` from the magnitudes ``|W_k|`` already computed."""
        return (self.multiplicity * torch.log(magnitude)).sum(-1)

    def convolve(self, z: Tensor, spectrum: Tensor) -> Tensor:
        """``w (*) z`` along the last dimension; real output."""
        return torch.fft.irfft(spectrum * torch.fft.rfft(z, dim=-1), n=self.n, dim=-1)

    def deconvolve(self, y: Tensor, spectrum: Tensor) -> Tensor:
        """The inverse of ``convolve``: division in the Fourier domain."""
        return torch.fft.irfft(torch.fft.rfft(y, dim=-1) / spectrum, n=self.n, dim=-1)


class CircularConvolution(FlowLayer):
    """``y = w (*) z`` with a real kernel given by its spectrum (module docstring).

    Args:
        dim: dimension ``D`` of ``z`` (odd or even).
        amortized: take the spectrum's raw magnitudes and phases per sample as
            ``params`` (``n_params = 2 (D // 2 + 1)``: magnitudes first).

    Example::

        layer = CircularConvolution(5)
        y, log_det = layer(torch.randn(3, 5))
        z = layer.inverse(y)
    """

    def __init__(self, dim: int, amortized: bool = False):
        super().__init__()
        self.dim = dim
        self.layout = SpectrumLayout(dim)
        n_freq = self.layout.n_freq
        self.amortized = amortized
        self.n_params = 2 * n_freq if amortized else 0
        if not amortized:
            self.log_magnitude = nn.Parameter(torch.zeros(n_freq))
            self.phase = nn.Parameter(torch.zeros(n_freq))

    def _raw(self, params: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.amortized:
            return params.split(self.layout.n_freq, dim=-1)
        return self.log_magnitude, self.phase

    def spectrum(self, params: Tensor | None = None) -> Tensor:
        """``W_k`` for ``k = 0 .. D // 2`` (complex; real at frequency 0 and Nyquist)."""
        return self.layout.spectrum(*self._raw(params))

    def kernel(self, params: Tensor | None = None) -> Tensor:
        """The real kernel ``w`` in the signal domain."""
        return torch.fft.irfft(self.spectrum(params), n=self.dim)

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        raw_magnitude, phase = self._raw(params)
        y = self.layout.convolve(z, self.layout.spectrum(raw_magnitude, phase))
        return y, self.layout.log_abs_det(raw_magnitude).expand(z.shape[:-1])

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        return self.layout.deconvolve(y, self.spectrum(params))
