"""NICE layers (Dinh, Krueger & Bengio 2014), used by the paper in section 6.

* ``AdditiveCoupling``: split ``z = (z_A, z_B)``; ``y_A = z_A``,
  ``y_B = z_B + m(z_A)`` with ``m`` an MLP.  Volume preserving: ``log|det| = 0``;
  inverse ``z_B = y_B - m(y_A)``.
* ``Permutation``: ``y = z[perm]`` for a fixed random permutation (NICE-perm).
* ``OrthogonalMixing``: ``y = Q z`` for a fixed random orthogonal ``Q``
  (NICE-orth); ``|det Q| = 1``.
* ``DiagonalScaling``: ``y = exp(s) * z``, ``log|det| = sum_i s_i`` (NICE's
  final scaling layer; the sum is signed, never ``abs(sum(s))``).

Conditioning on a data point (the MNIST posteriors): an amortised coupling
takes a per-sample context vector ``c`` (emitted by the inference network) as
its ``params`` and computes ``m(z_A, c)``; an amortised scaling takes its
``s`` per sample.  The map stays a coupling in ``z`` for each fixed ``c``, so
the inverse and the log-determinant are unchanged.

Couplings, permutations and orthogonal mixing are volume preserving, so a NICE
flow without a scaling layer can move mass but never concentrate it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nf.flows.base import FlowLayer
from nf.flows.coupling import Coupling, mlp


class AdditiveCoupling(Coupling):
    """NICE additive coupling ``y_A = z_A``, ``y_B = z_B + m(z_A)``; ``log|det| = 0``.

    Alternate ``swap`` between layers so every coordinate gets updated.

    Args:
        dim: dimension of ``z`` (at least 2).
        hidden: hidden-layer widths of the coupling MLP ``m``.
        activation: its nonlinearity.
        swap: update the first half from the second instead.
        zero_init: start as the identity (last layer of ``m`` zeroed).
        context: size of a per-sample context vector passed as ``params``
            (0: unconditional, the layer's parameters are global).

    Example::

        layer = AdditiveCoupling(4, hidden=(16,), context=3)
        y, log_det = layer(torch.randn(5, 4), torch.randn(5, 3))  # log_det == 0
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
        swap: bool = False,
        zero_init: bool = True,
        context: int = 0,
    ):
        super().__init__(dim, swap, context)
        self.coupling = mlp(self.n_cond + context, self.n_update, hidden, activation, zero_output=zero_init)

    def shift(self, z_a: Tensor, params: Tensor | None) -> Tensor:
        """``m(z_A)``, or ``m(z_A, c)`` with the context ``c = params``."""
        return self.coupling(self.conditioner_input(z_a, params))

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        z_a, z_b = self._split(z)
        y = self._join(z_a, z_b + self.shift(z_a, params))
        return y, z.new_zeros(z.shape[:-1])

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        y_a, y_b = self._split(y)
        return self._join(y_a, y_b - self.shift(y_a, params))


class Permutation(FlowLayer):
    """Fixed random permutation of coordinates ``y = z[perm]``; ``log|det| = 0``."""

    def __init__(self, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.dim = dim
        perm = torch.randperm(dim, generator=generator)
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        return z[..., self.perm], z.new_zeros(z.shape[:-1])

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        return y[..., self.inverse_perm]


def random_orthogonal(dim: int, generator: torch.Generator | None = None) -> Tensor:
    """A Haar-random orthogonal matrix: QR of a Gaussian matrix with the signs of ``diag(R)`` fixed."""
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


class OrthogonalMixing(FlowLayer):
    """Fixed random orthogonal mixing ``y = Q z``; ``log|det Q| = 0``; inverse ``Q' y``."""

    def __init__(self, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.dim = dim
        self.register_buffer("matrix", random_orthogonal(dim, generator).to(torch.get_default_dtype()))

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        return z @ self.matrix.T, z.new_zeros(z.shape[:-1])

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        return y @ self.matrix


class DiagonalScaling(FlowLayer):
    """NICE's diagonal scaling ``y = exp(s) * z``; ``log|det| = sum_i s_i`` (signed).

    Global ``s`` (a parameter, starting at 0) or, with ``amortized=True``, a
    per-sample ``s`` passed as ``params`` (``n_params = dim``).
    """

    def __init__(self, dim: int, amortized: bool = False):
        super().__init__()
        self.dim = dim
        self.amortized = amortized
        self.n_params = dim if amortized else 0
        self.log_scale = None if amortized else nn.Parameter(torch.zeros(dim))

    def _scale(self, params: Tensor | None) -> Tensor:
        return params if self.amortized else self.log_scale

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        s = self._scale(params)
        y = z * torch.exp(s)
        return y, s.sum(-1).expand(z.shape[:-1])

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        return y * torch.exp(-self._scale(params))
