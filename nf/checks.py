"""Numerical checks of a flow layer, used by the book and by the tests."""

from __future__ import annotations

from collections.abc import Callable

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


def randomize_parameters(layer: FlowLayer, std: float = 0.7, seed: int = 0) -> FlowLayer:
    """Overwrite every parameter with N(0, std^2) noise, in float64: zero-initialised layers would check nothing."""
    generator = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(std * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return layer


def check_table(
    layers: dict[str, Callable[[], FlowLayer]], dim: int, tolerance: float = 1e-9, seed: int = 0
) -> list[dict[str, str]]:
    """One row per named layer acting on ``R^dim``: is its log-det within ``tolerance`` of autograd's, and its inverse?

    ``layers`` maps names to functions that build the layers; they are built
    with float64 as the default dtype (so fixed buffers such as an orthogonal
    matrix are exact to float64), randomised (``randomize_parameters``) and
    checked on 8 random points; amortised layers get random per-sample ``params``.
    """
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(8, dim, generator=generator, dtype=torch.float64)
    rows = []
    previous = torch.get_default_dtype()
    for name, build in layers.items():
        torch.set_default_dtype(torch.float64)
        try:
            layer = randomize_parameters(build(), seed=seed)
        finally:
            torch.set_default_dtype(previous)
        params = torch.randn(8, layer.n_params, generator=generator, dtype=torch.float64) if layer.amortized else None
        rows.append({
            "layer": name,
            "D": str(dim),
            f"log-det error < {tolerance:g}": str(log_det_error(layer, z, params) < tolerance),
            f"inverse error < {tolerance:g}": str(inverse_error(layer, z, params) < tolerance),
        })
    return rows
