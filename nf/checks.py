"""Numerical checks of a flow layer, used by the book and by the tests."""

from __future__ import annotations

import torch
from torch import Tensor

from .flows import FlowLayer


def autograd_log_abs_det(layer: FlowLayer, z: Tensor, params: Tensor | None = None) -> Tensor:
    """``ln|det df/dz|`` at each row of ``z`` from the full Jacobian by ``torch.autograd.functional.jacobian``."""
    values = []
    for i in range(z.shape[0]):
        p = None if params is None else params[i : i + 1]

        def f(x: Tensor, p: Tensor | None = p) -> Tensor:
            return layer(x.unsqueeze(0), p)[0].squeeze(0)

        jacobian = torch.autograd.functional.jacobian(f, z[i])
        values.append(torch.linalg.slogdet(jacobian).logabsdet)
    return torch.stack(values)


def log_det_error(layer: FlowLayer, z: Tensor, params: Tensor | None = None) -> float:
    """Largest absolute difference between a layer's log-det and the autograd one."""
    _, log_det = layer(z, params)
    return (log_det - autograd_log_abs_det(layer, z, params)).abs().max().item()


def inverse_error(layer: FlowLayer, z: Tensor, params: Tensor | None = None) -> float:
    """Largest absolute difference between ``f^{-1}(f(z))`` and ``z``."""
    y, _ = layer(z, params)
    return (layer.inverse(y, params) - z).abs().max().item()
