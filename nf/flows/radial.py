"""Radial flow (Rezende & Mohamed 2015, section 4.1, eq. 13-14 and appendix A.2).

    f(z) = z + beta h(alpha, r) (z - z0),   r = |z - z0|,   h = 1 / (alpha + r)   (eq. 13)
    |det df/dz| = [1 + beta h]^(D-1) [1 + beta h + beta h'(alpha, r) r]           (eq. 14)
                = [1 + beta h]^(D-1) [1 + beta alpha / (alpha + r)^2]

``f`` is invertible when ``beta >= -alpha`` (appendix A.2).  Raw parameters are
mapped to ``alpha = softplus(a) > 0`` and ``beta = -alpha + softplus(b) >= -alpha``.

Inverse in closed form: ``f`` moves ``z`` along the ray from ``z0``, so with
``s = |y - z0|`` the radius solves ``r + beta r / (alpha + r) = s``, i.e. the
quadratic ``r^2 + (alpha + beta - s) r - alpha s = 0`` whose non-negative root
is taken; then ``z - z0 = (y - z0) / (1 + beta / (alpha + r))``.

Example::

    >>> layer = Radial(dim=2)
    >>> z = torch.randn(5, 2)
    >>> y, log_det = layer(z)
    >>> torch.allclose(layer.inverse(y), z, atol=1e-5)
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nf.flows.base import FlowLayer


def constrained_alpha_beta(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``alpha = softplus(a) > 0`` and ``beta = -alpha + softplus(b) >= -alpha``."""
    alpha = F.softplus(a)
    return alpha, -alpha + F.softplus(b)


def radial_forward(z: Tensor, z0: Tensor, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 13-14; ``alpha`` and ``beta`` have a trailing dim of 1."""
    diff = z - z0
    r = diff.norm(dim=-1, keepdim=True)
    beta_h = beta / (alpha + r)
    y = z + beta_h * diff
    dim = z.shape[-1]
    log_det = (dim - 1) * torch.log1p(beta_h) + torch.log1p(beta * alpha / (alpha + r) ** 2)
    return y, log_det.squeeze(-1)


def radial_inverse(y: Tensor, z0: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """Invert eq. 13 in closed form (module docstring)."""
    diff = y - z0
    s = diff.norm(dim=-1, keepdim=True)
    p = alpha + beta - s
    # Non-negative root of r^2 + p r - alpha s = 0, written to avoid cancellation.
    disc = torch.sqrt(p * p + 4.0 * alpha * s)
    r = torch.where(p <= 0, 0.5 * (disc - p), 2.0 * alpha * s / (disc + p))
    return z0 + diff * (alpha + r) / (alpha + beta + r)


class Radial(FlowLayer):
    """Radial flow layer ``f(z) = z + beta (z - z0) / (alpha + |z - z0|)`` (eq. 13-14).

    Args:
        dim: dimension ``D`` of ``z``.
        amortized: if True the layer owns no parameters; ``forward`` takes
            ``params`` of shape ``(..., D + 2)`` laid out as ``[z0, a, b]``
            with ``a, b`` the raw values behind ``alpha, beta``.

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing
    Flows", ICML 2015, eq. 13-14 and appendix A.2.
    """

    def __init__(self, dim: int, amortized: bool = False):
        super().__init__()
        self.dim = dim
        self.n_params = dim + 2
        self.amortized = amortized
        if not amortized:
            bound = 1.0 / math.sqrt(dim)
            self.z0 = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
            self.a = nn.Parameter(torch.empty(1).uniform_(-bound, bound))
            self.b = nn.Parameter(torch.empty(1).uniform_(-bound, bound))

    def parameters_constrained(self, params: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(z0, alpha, beta)`` with ``alpha > 0`` and ``beta >= -alpha``."""
        if params is None:
            z0, a, b = self.z0, self.a, self.b
        else:
            d = self.dim
            z0, a, b = params[..., :d], params[..., d : d + 1], params[..., d + 1 :]
        return (z0, *constrained_alpha_beta(a, b))

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        return radial_forward(z, *self.parameters_constrained(params))

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        return radial_inverse(y, *self.parameters_constrained(params))
