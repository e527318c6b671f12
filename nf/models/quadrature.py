"""Log normalising constants of 2-D targets by quadrature.

``ln Z = ln \\int exp(-U(z)) dz`` by the midpoint rule on an ``n x n`` grid over
``[-L, L]^2``, summed in log space.  The targets are smooth and their mass
lies well inside ``[-7, 7]^2``, so refining the grid changes ``ln Z`` by far
less than 1e-4 (the tests check this), and with ``ln Z`` known the KL
divergence ``KL(q || p) = E_q[ln q(z) + U(z)] + ln Z`` is exact up to
Monte-Carlo error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

DEFAULT_HALF_WIDTH = 7.0
DEFAULT_CELLS = 1200


def midpoint_grid(half_width: float, n: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, float]:
    """Cell centres ``(n, n, 2)`` of an ``n x n`` grid over ``[-L, L]^2`` and the cell area."""
    h = 2.0 * half_width / n
    centres = -half_width + h * (torch.arange(n, dtype=dtype) + 0.5)
    z1, z2 = torch.meshgrid(centres, centres, indexing="xy")
    return torch.stack([z1, z2], dim=-1), h * h


def log_normalizer(
    energy: Callable[[Tensor], Tensor], half_width: float = DEFAULT_HALF_WIDTH, n: int = DEFAULT_CELLS
) -> float:
    """``ln \\int_{[-L, L]^2} exp(-U(z)) dz`` by the midpoint rule, in float64."""
    z, area = midpoint_grid(half_width, n)
    with torch.no_grad():
        return (torch.logsumexp(-energy(z).flatten(), dim=0) + math.log(area)).item()
