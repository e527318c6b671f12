"""Exact densities of flows (paper eq. 7), evaluated by inverting the flow."""

from __future__ import annotations

from torch import Tensor

from .distributions import DiagonalGaussian
from .flows import FlowLayer


def flow_log_density(flow: FlowLayer, base: DiagonalGaussian, y: Tensor, params: Tensor | None = None) -> Tensor:
    """Exact ``ln q_K(y)`` for ``q_K`` = ``base`` pushed through ``flow``.

    Inverts the flow to ``z_0 = f^{-1}(y)``, then applies eq. 7 along the path:
    ``ln q_K(y) = ln q_0(z_0) - sum_k ln|det df_k/dz_{k-1}|``.
    """
    z0 = flow.inverse(y, params)
    _, log_det = flow(z0, params)
    return base.log_prob(z0) - log_det
