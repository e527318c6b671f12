"""Planar flow (Rezende & Mohamed 2015, section 4.1, eq. 10-12 and appendix A.1).

    f(z) = z + u_hat h(w'z + b),          h = tanh                    (eq. 10)
    psi(z) = h'(w'z + b) w                                            (eq. 11)
    |det df/dz| = |1 + u_hat' psi(z)|                                 (eq. 12)

``f`` is invertible when ``w'u_hat >= -1`` (appendix A.1).  Any raw ``u`` is
mapped to a ``u_hat`` that satisfies it:

    u_hat = u + (m(w'u) - w'u) w / ||w||^2,   m(x) = -1 + softplus(x),

so that ``w'u_hat = m(w'u) > -1``.  Note the *squared* norm: with ``||w||``
the condition fails whenever ``||w|| != 1``.

Inverse: project on ``w``.  With ``a = w'z + b`` and ``t = w'y + b`` we have
``t = a + (w'u_hat) tanh(a)``, strictly increasing in ``a`` because
``1 + w'u_hat tanh'(a) > 0``; and ``|a - t| <= |w'u_hat|``.  ``a`` is found by
bisection on that bracket followed by Newton steps, then
``z = y - u_hat tanh(a)``.

Example::

    >>> layer = Planar(dim=2)
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

IDENTITY_WU = math.log(math.e - 1.0)  # the w'u at which m(w'u) = 0: u_hat = 0, the identity map
_BISECTION_STEPS = 60
_NEWTON_STEPS = 3


def constrained_u(u: Tensor, w: Tensor) -> Tensor:
    """Return ``u_hat = u + (m(w'u) - w'u) w / ||w||^2`` with ``m(x) = -1 + softplus(x)``.

    Guarantees ``w'u_hat > -1`` (appendix A.1), hence an invertible layer.
    """
    wu = (w * u).sum(-1, keepdim=True)
    w_norm_sq = (w * w).sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    return u + (F.softplus(wu) - 1.0 - wu) * w / w_norm_sq


def identity_parameters(w: Tensor) -> Tensor:
    """Raw parameters ``[u, w, b]`` (last dimension ``2 D + 1``) of planar layers with directions ``w`` (``(..., D)``)
    that are each the identity map: ``b = 0`` and ``u = ln(e - 1) w / ||w||^2``, so that ``w'u = ln(e - 1)``,
    ``m(w'u) = 0`` and ``u_hat = 0`` (``constrained_u``).  ``u = 0`` would not do: it gives
    ``u_hat = m(0) w / ||w||^2``.  The gradient of ``u`` is not zero there, so a layer moves off the identity as its
    objective needs."""
    u = IDENTITY_WU * w / (w * w).sum(-1, keepdim=True)
    return torch.cat([u, w, torch.zeros_like(w[..., :1])], dim=-1)


def planar_forward(z: Tensor, u_hat: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 10-12 for an already constrained ``u_hat``; ``b`` has a trailing dim of 1."""
    a = (w * z).sum(-1, keepdim=True) + b
    h = torch.tanh(a)
    y = z + u_hat * h
    wu = (w * u_hat).sum(-1, keepdim=True)
    det = 1.0 + wu * (1.0 - h * h)
    return y, torch.log(det.abs()).squeeze(-1)


def planar_inverse(y: Tensor, u_hat: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Invert eq. 10 by a monotone one-dimensional solve along ``w`` (module docstring)."""
    t = (w * y).sum(-1, keepdim=True) + b
    c = (w * u_hat).sum(-1, keepdim=True)
    t, c = torch.broadcast_tensors(t, c)
    lo, hi = t - c.abs(), t + c.abs()
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        above = mid + c * torch.tanh(mid) > t
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    a = 0.5 * (lo + hi)
    for _ in range(_NEWTON_STEPS):
        th = torch.tanh(a)
        slope = 1.0 + c * (1.0 - th * th)
        step = (a + c * th - t) / slope.clamp_min(torch.finfo(a.dtype).eps)
        a = (a - step).clamp(lo, hi)
    return y - u_hat * torch.tanh(a)


class Planar(FlowLayer):
    """Planar flow layer ``f(z) = z + u_hat tanh(w'z + b)`` (eq. 10-12).

    Args:
        dim: dimension ``D`` of ``z``.
        amortized: if True the layer owns no parameters; ``forward`` takes
            ``params`` of shape ``(..., 2D + 1)`` laid out as ``[u, w, b]``.

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing
    Flows", ICML 2015, eq. 10-12 and appendix A.1.
    """

    def __init__(self, dim: int, amortized: bool = False):
        super().__init__()
        self.dim = dim
        self.n_params = 2 * dim + 1
        self.amortized = amortized
        if not amortized:
            bound = 1.0 / math.sqrt(dim)
            self.u = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
            self.w = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
            self.b = nn.Parameter(torch.zeros(1))

    def raw_parameters(self, params: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Return the unconstrained ``(u, w, b)``, global or split from ``params``."""
        if params is None:
            return self.u, self.w, self.b
        d = self.dim
        return params[..., :d], params[..., d : 2 * d], params[..., 2 * d :]

    def parameters_constrained(self, params: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(u_hat, w, b)`` with ``w'u_hat > -1``."""
        u, w, b = self.raw_parameters(params)
        return constrained_u(u, w), w, b

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        return planar_forward(z, *self.parameters_constrained(params))

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        return planar_inverse(y, *self.parameters_constrained(params))
