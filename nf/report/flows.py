"""Tables about flow layers: the log-det and inverse checks, and parameter counts (theory, NICE and conv chapters)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nf.flows import FlowLayer, make_flow
from nf.flows.checks import inverse_error, log_det_error, randomize_parameters


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
        rows.append(
            {
                "layer": name,
                "D": str(dim),
                f"log-det error < {tolerance:g}": str(log_det_error(layer, z, params) < tolerance),
                f"inverse error < {tolerance:g}": str(inverse_error(layer, z, params) < tolerance),
            }
        )
    return rows


def parameter_count_table(dims: list[int], lengths: list[int], families: list[str]) -> list[dict[str, str]]:
    """Trainable parameters of global flows of each family and length, one row per (dim, length)."""
    return [
        {
            "D": str(d),
            "K": str(k),
            **{f: f"{sum(p.numel() for p in make_flow(f, d, k).parameters()):,}" for f in families},
        }
        for d in dims
        for k in lengths
    ]
