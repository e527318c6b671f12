"""What every coupling layer shares (NICE couplings and the convolutional couplings).

A coupling layer splits ``z = (z_A, z_B)``, leaves the conditioning half
``z_A`` unchanged and updates ``z_B`` by an invertible map whose parameters
are computed from ``z_A`` (and, when amortised, from a per-sample context),
so its Jacobian is triangular (Dinh, Krueger & Bengio 2014).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nf.flows.base import FlowLayer


def mlp(
    in_features: int,
    out_features: int,
    hidden: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.ReLU,
    zero_output: bool = False,
) -> nn.Sequential:
    """A plain multilayer perceptron ``in -> hidden... -> out``; ``zero_output`` zeroes its last layer (output 0)."""
    sizes = [in_features, *hidden]
    modules: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        modules += [nn.Linear(n_in, n_out), activation()]
    modules.append(nn.Linear(sizes[-1], out_features))
    if zero_output:
        nn.init.zeros_(modules[-1].weight)
        nn.init.zeros_(modules[-1].bias)
    return nn.Sequential(*modules)


class Coupling(FlowLayer):
    """What every coupling layer shares: the split ``z = (z_A, z_B)``, the join, and the optional context.

    ``z_A`` (conditioning, left unchanged) is the first ``dim // 2``
    coordinates and ``z_B`` (updated) the rest, or the other way round with
    ``swap=True``.  With ``context > 0`` the layer is amortised: ``params`` is
    a per-sample context vector that the conditioning network sees beside
    ``z_A`` (``conditioner_input``).
    """

    def __init__(self, dim: int, swap: bool = False, context: int = 0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling layer needs dim >= 2, got dim={dim}")
        if context < 0:
            raise ValueError(f"context size must be >= 0, got {context}")
        self.dim, self.swap = dim, swap
        self.n_params, self.amortized = context, context > 0
        half = dim // 2
        self.n_cond, self.n_update = (dim - half, half) if swap else (half, dim - half)

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.swap:
            z_b, z_a = z.split([self.n_update, self.n_cond], dim=-1)
        else:
            z_a, z_b = z.split([self.n_cond, self.n_update], dim=-1)
        return z_a, z_b

    def _join(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        return torch.cat([z_b, z_a] if self.swap else [z_a, z_b], dim=-1)

    @staticmethod
    def conditioner_input(z_a: Tensor, context: Tensor | None) -> Tensor:
        """``[z_A, c]``: the conditioning half joined with the context (if any), broadcast over sample dimensions."""
        if context is None:
            return z_a
        return torch.cat([z_a, context.expand(*z_a.shape[:-1], context.shape[-1])], dim=-1)
