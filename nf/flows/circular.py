"""Invertible circular convolution (Karami et al., "Invertible Convolutional Flow", NeurIPS 2019).

    y = w (*) z,   y_i = sum_j w_j z_{(i - j) mod D}

is multiplication by a circulant matrix, which the discrete Fourier transform
diagonalises: ``Y_k = W_k Z_k``.  Hence, in O(D log D) with real FFTs,

    y = irfft(W * rfft(z)),   z = irfft(rfft(y) / W),   ln|det| = sum_{k=0}^{D-1} ln|W_k|.

The kernel is parametrised by its spectrum, so that it is real and every
``|W_k|`` stays away from zero: for the ``D // 2 + 1`` non-redundant
frequencies, ``|W_k| = eps + softplus(a_k)`` and, except at frequency 0 and
(for even ``D``) the Nyquist frequency where a real kernel's spectrum is real,
a free phase ``phi_k``.  The full-spectrum sum counts each non-redundant
frequency once or twice (its conjugate twin):

    ln|det| = ln|W_0| + 2 sum_{0<k<D/2} ln|W_k| + [D even] ln|W_{D/2}|.

Everything stays in the autograd graph: the log-determinant is a
differentiable tensor, never a Python number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FlowLayer

MIN_MAGNITUDE = 1e-3


class CircularConvolution(FlowLayer):
    """``y = w (*) z`` with a learned real kernel given by its spectrum (module docstring).

    Args:
        dim: dimension ``D`` of ``z`` (odd or even).

    Example::

        layer = CircularConvolution(5)
        y, log_det = layer(torch.randn(3, 5))
        z = layer.inverse(y)
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        n_freq = dim // 2 + 1
        self.log_magnitude = nn.Parameter(torch.zeros(n_freq))
        self.phase = nn.Parameter(torch.zeros(n_freq))
        weight = torch.full((n_freq,), 2.0)
        weight[0] = 1.0
        real = torch.zeros(n_freq, dtype=torch.bool)
        real[0] = True
        if dim % 2 == 0:
            weight[-1] = 1.0
            real[-1] = True
        self.register_buffer("multiplicity", weight)
        self.register_buffer("real_frequency", real)

    def magnitude(self) -> Tensor:
        """``|W_k|`` for the non-redundant frequencies, at least ``MIN_MAGNITUDE``."""
        return MIN_MAGNITUDE + F.softplus(self.log_magnitude + 0.5413248546129181)  # softplus(.) = 1 at start

    def spectrum(self) -> Tensor:
        """``W_k`` for ``k = 0 .. D // 2`` (complex; real at frequency 0 and Nyquist)."""
        phase = torch.where(self.real_frequency, torch.zeros_like(self.phase), self.phase)
        return torch.polar(self.magnitude(), phase)

    def kernel(self) -> Tensor:
        """The real kernel ``w`` in the signal domain."""
        return torch.fft.irfft(self.spectrum(), n=self.dim)

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        y = torch.fft.irfft(self.spectrum() * torch.fft.rfft(z, dim=-1), n=self.dim, dim=-1)
        log_det = (self.multiplicity * torch.log(self.magnitude())).sum()
        return y, log_det.expand(z.shape[:-1])

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        return torch.fft.irfft(torch.fft.rfft(y, dim=-1) / self.spectrum(), n=self.dim, dim=-1)
