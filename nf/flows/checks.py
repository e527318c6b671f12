"""Numerical checks of a flow layer against autograd, used by the tests and the book."""

from __future__ import annotations

import torch
from torch import Tensor

from nf.flows import FlowLayer


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


def randomize_parameters(layer: FlowLayer, std: float = 0.7, seed: int = 0) -> FlowLayer:
    """Overwrite every parameter with N(0, std^2) noise, in float64: zero-initialised layers would check nothing."""
    generator = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(std * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return layer
