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

    Where the preimage is out of the floating-point range, ``ln q_K(y) = -inf``
    is returned instead of NaN: where the inverse overflows (``z_0`` not
    finite, as with many expanding inverse LogGates), and where ``z_0`` is
    finite but so large that ``ln q_0(z_0)`` underflows to ``-inf`` while the
    log-determinant along the path overflows (``inf - inf``).
    """
    z0 = flow.inverse(y, params)
    overflowed = ~torch.isfinite(z0).all(-1)
    z0 = torch.where(overflowed.unsqueeze(-1), torch.zeros_like(z0), z0)
    _, log_det = flow(z0, params)
    log_q0 = base.log_prob(z0)
    outside = overflowed | (log_q0 == -torch.inf)
    return torch.where(outside, torch.full_like(log_det, -torch.inf), log_q0 - log_det)
