"""Exact densities of flows (paper eq. 7), evaluated by inverting the flow."""

from __future__ import annotations

import torch
from torch import Tensor

from nf.flows import FlowLayer
from nf.models.distributions import DiagonalGaussian


def flow_log_density(flow: FlowLayer, base: DiagonalGaussian, y: Tensor, params: Tensor | None = None) -> Tensor:
    """Exact ``ln q_K(y)`` for ``q_K`` = ``base`` pushed through ``flow``.

    Inverts the flow to ``z_0 = f^{-1}(y)``, then applies eq. 7 along the path:
    ``ln q_K(y) = ln q_0(z_0) - sum_k ln|det df_k/dz_{k-1}|``.

    Where the inverse overflows (``z_0`` not finite: ``y`` is so far out that
    its preimage lies beyond the floating-point range, as with many expanding
    inverse LogGates), the base density of ``z_0`` underflows and
    ``ln q_K(y) = -inf`` is returned instead of NaN.
    """
    z0 = flow.inverse(y, params)
    overflowed = ~torch.isfinite(z0).all(-1)
    z0 = torch.where(overflowed.unsqueeze(-1), torch.zeros_like(z0), z0)
    _, log_det = flow(z0, params)
    return torch.where(overflowed, torch.full_like(log_det, -torch.inf), base.log_prob(z0) - log_det)
