"""Data-adaptive convolutional coupling (Karami et al. 2019, "convolutional coupling") and a pointwise bijection.

``ConvolutionalCoupling`` splits ``z = (z_A, z_B)`` and convolves ``z_B``
circularly with a kernel that a network computes from ``z_A``:

    y_A = z_A,   y_B = w(z_A) (*) z_B + t(z_A),
    ln|det| = sum_k ln|W_k(z_A)|          (the Jacobian is block triangular
                                           with a circulant block),

where the network emits the kernel's spectrum (raw magnitudes and phases,
parametrised as in ``nf.flows.circular``, so ``|W_k| >= eps``) and the shift
``t``.  Inverse: ``z_B = irfft(rfft(y_B - t(y_A)) / W(y_A))``.  With a
context ``c`` (amortised use) the network sees ``[z_A, c]``.  For a
one-dimensional half the convolution is a scaling, and the layer is an affine
(RealNVP-style) coupling.

``LogGate`` is the pointwise nonlinearity placed between convolutional layers
(Karami et al.'s "SLogGate"), with ``alpha = softplus(a) > 0`` per coordinate:

    y = sign(z) ln(1 + alpha |z|) / alpha,     dy/dz = 1 / (1 + alpha |z|),
    z = sign(y) (exp(alpha |y|) - 1) / alpha.

It is a bijection of the real line, near the identity for small ``alpha``,
and compresses the tails: it is what makes a stack of convolutions non-linear.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nf.flows.base import FlowLayer
from nf.flows.circular import SpectrumLayout
from nf.flows.coupling import Coupling, mlp
from nf.validation import check_positive


class ConvolutionalCoupling(Coupling):
    """``y_B = w(z_A) (*) z_B + t(z_A)`` with a kernel computed from the other half (module docstring).

    Args:
        dim: dimension of ``z`` (at least 2).
        hidden: hidden-layer widths of the network producing the kernel and shift.
        swap: convolve the first half, conditioned on the second.
        zero_init: start as the identity (``W = 1``, ``t = 0``).
        context: size of a per-sample context passed as ``params`` (0: none).

    Example::

        layer = ConvolutionalCoupling(6, hidden=(16,))
        y, log_det = layer(torch.randn(3, 6))
        z = layer.inverse(y)
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64, 64),
        swap: bool = False,
        zero_init: bool = True,
        context: int = 0,
    ):
        super().__init__(dim, swap, context)
        self.layout = SpectrumLayout(self.n_update)
        n_freq = self.layout.n_freq
        self.network = mlp(self.n_cond + context, 2 * n_freq + self.n_update, hidden, nn.ReLU, zero_output=zero_init)

    def kernel_and_shift(self, z_a: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(raw magnitudes, phases, t)`` computed from the conditioning half (and context)."""
        n_freq = self.layout.n_freq
        return self.network(self.conditioner_input(z_a, params)).split([n_freq, n_freq, self.n_update], dim=-1)

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        z_a, z_b = self._split(z)
        raw_magnitude, phase, shift = self.kernel_and_shift(z_a, params)
        magnitude = self.layout.magnitude(raw_magnitude)
        y_b = self.layout.convolve(z_b, self.layout.spectrum_of(magnitude, phase)) + shift
        return self._join(z_a, y_b), self.layout.log_abs_det_of(magnitude)

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        y_a, y_b = self._split(y)
        raw_magnitude, phase, shift = self.kernel_and_shift(y_a, params)
        return self._join(y_a, self.layout.deconvolve(y_b - shift, self.layout.spectrum(raw_magnitude, phase)))


INITIAL_ALPHA = 0.05


class LogGate(FlowLayer):
    """Pointwise ``y = sign(z) ln(1 + alpha |z|) / alpha`` with a learned ``alpha > 0`` per coordinate, starting at
    ``alpha`` (the identity is the limit ``alpha -> 0``: ``|y - z| <= alpha z^2 / 2``)."""

    def __init__(self, dim: int, alpha: float = INITIAL_ALPHA):
        super().__init__()
        check_positive("LogGate alpha", alpha)
        self.dim = dim
        raw = torch.log(torch.expm1(torch.tensor(float(alpha))))
        self.raw_alpha = nn.Parameter(raw.expand(dim).clone())

    def alpha(self) -> Tensor:
        """``alpha = softplus(a)``, positive."""
        return F.softplus(self.raw_alpha)

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        alpha = self.alpha()
        scaled = alpha * z.abs()
        y = torch.sign(z) * torch.log1p(scaled) / alpha
        return y, -torch.log1p(scaled).sum(-1)

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        alpha = self.alpha()
        return torch.sign(y) * torch.expm1(alpha * y.abs()) / alpha
