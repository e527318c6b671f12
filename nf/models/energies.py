"""The four 2-D target energies of the paper's Table 1 (Fig. 3a).

Each target density is ``p(z) = exp(-U(z)) / Z``.  With

    w1(z) = sin(pi z1 / 2),
    w2(z) = 3 exp(-((z1 - 1) / 0.6)^2 / 2),
    w3(z) = 3 sigmoid((z1 - 1) / 0.3),

the energies are

    U1(z) = ((||z|| - 2) / 0.4)^2 / 2 - ln(exp(-((z1 - 2)/0.6)^2/2) + exp(-((z1 + 2)/0.6)^2/2))
    U2(z) = ((z2 - w1) / 0.4)^2 / 2
    U3(z) = -ln(exp(-((z2 - w1)/0.35)^2/2) + exp(-((z2 - w1 + w2)/0.35)^2/2))
    U4(z) = -ln(exp(-((z2 - w1)/0.4)^2/2) + exp(-((z2 - w1 + w3)/0.35)^2/2))

Only U1 decays in every direction.  U2-U4 depend on ``z1`` only through
bounded functions, so ``exp(-U)`` does not decay along ``z1``: their integral
over the plane is infinite, and a flow fitted to them can lower its free
energy without end by spreading along ``z1``.

The book therefore fits *windowed* targets (``target_energy``): the paper's
``exp(-U)`` unchanged inside the plotted window ``|z1| <= 4``, with Gaussian
tails of width 0.2 outside it,

    U_win(z) = U(z) + max(0, |z1| - 4)^2 / (2 * 0.2^2),

which is normalisable and equals the paper's target wherever the paper
plots it.  U1 is normalisable as it stands and is used unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from nf.validation import check_choice


def _w1(z1: Tensor) -> Tensor:
    return torch.sin(0.5 * math.pi * z1)


def _w2(z1: Tensor) -> Tensor:
    return 3.0 * torch.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)


def _w3(z1: Tensor) -> Tensor:
    return 3.0 * torch.sigmoid((z1 - 1.0) / 0.3)


def _neg_log_sum_exp(a: Tensor, b: Tensor) -> Tensor:
    """``-ln(exp(a) + exp(b))``, computed stably."""
    return -torch.logaddexp(a, b)


def u1(z: Tensor) -> Tensor:
    """Ring with two lobes (Table 1, U1)."""
    z1 = z[..., 0]
    ring = 0.5 * ((z.norm(dim=-1) - 2.0) / 0.4) ** 2
    return ring + _neg_log_sum_exp(-0.5 * ((z1 - 2.0) / 0.6) ** 2, -0.5 * ((z1 + 2.0) / 0.6) ** 2)


def u2(z: Tensor) -> Tensor:
    """Sine wave (Table 1, U2)."""
    z1, z2 = z[..., 0], z[..., 1]
    return 0.5 * ((z2 - _w1(z1)) / 0.4) ** 2


def u3(z: Tensor) -> Tensor:
    """Sine wave split by a bump (Table 1, U3)."""
    z1, z2 = z[..., 0], z[..., 1]
    w1 = _w1(z1)
    return _neg_log_sum_exp(-0.5 * ((z2 - w1) / 0.35) ** 2, -0.5 * ((z2 - w1 + _w2(z1)) / 0.35) ** 2)


def u4(z: Tensor) -> Tensor:
    """Sine wave split by a step (Table 1, U4)."""
    z1, z2 = z[..., 0], z[..., 1]
    w1 = _w1(z1)
    return _neg_log_sum_exp(-0.5 * ((z2 - w1) / 0.4) ** 2, -0.5 * ((z2 - w1 + _w3(z1)) / 0.35) ** 2)


ENERGIES: dict[str, Callable[[Tensor], Tensor]] = {"U1": u1, "U2": u2, "U3": u3, "U4": u4}
NORMALIZABLE_AS_PUBLISHED = ("U1",)
WINDOW_HALF_WIDTH = 4.0
EDGE_WIDTH = 0.2


def _check_name(name: str) -> None:
    check_choice("energy", name, ENERGIES)


def paper_energy(name: str) -> Callable[[Tensor], Tensor]:
    """The energy ``U`` called ``name`` exactly as in Table 1 (U2-U4 not normalisable)."""
    _check_name(name)
    return ENERGIES[name]


def window_penalty(z: Tensor) -> Tensor:
    """``max(0, |z1| - 4)^2 / (2 * 0.2^2)``: zero inside the plotted window, Gaussian tails outside."""
    excess = (z[..., 0].abs() - WINDOW_HALF_WIDTH).clamp_min(0.0)
    return 0.5 * (excess / EDGE_WIDTH) ** 2


def target_energy(name: str) -> Callable[[Tensor], Tensor]:
    """The normalisable target the book fits: U1 as published, U2-U4 windowed (module docstring)."""
    _check_name(name)
    energy = ENERGIES[name]
    if name in NORMALIZABLE_AS_PUBLISHED:
        return energy

    def windowed(z: Tensor) -> Tensor:
        return energy(z) + window_penalty(z)

    windowed.__name__ = f"{name}_windowed"
    return windowed
