"""The parameters of ``K`` layers of one structure, each stacked into one ``(K, ...)`` tensor.

A fused chain (``CouplingChain``, ``ConvChain``) computes its ``K`` layers from
stacked weights: ``W[k]`` is layer ``k``'s copy of a weight.  Owning the stacks
as parameters, rather than stacking the layers' own parameters at every
forward pass, spares each update one stacking per weight, its backward (one
gradient per layer and per weight) and, in the optimiser and the gradient
clipping, a round of work per layer: a NICE chain of 80 couplings has 480
small tensors but only 6 stacks.

``StackedParameters(layers)`` copies the layers' current values;
``copy_to(layers)`` writes the stacks back into layer-by-layer modules (the
readable reference the chains are tested against).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class StackedParameters(nn.Module):
    """Every parameter of ``layers`` (modules of one structure), stacked over the layers.

    The stack of the parameter named ``name`` in each layer (``"network.0.weight"``) is ``self[name]``, of shape
    ``(K, *shape)``; it is registered with the dots replaced by underscores (``network_0_weight``).

    Example::

        stacks = StackedParameters([layer.network for layer in couplings])
        stacks["0.weight"]   # (K, H, D_in): the first linear layer of every coupling network
    """

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        if not layers:
            raise ValueError("StackedParameters needs at least one layer")
        self.names = [name for name, _ in layers[0].named_parameters()]
        shapes = [[(name, p.shape) for name, p in layer.named_parameters()] for layer in layers]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("StackedParameters needs layers whose parameters have the same names and shapes")
        for name in self.names:
            stack = torch.stack([layer.get_parameter(name).detach() for layer in layers])
            self.register_parameter(self._key(name), nn.Parameter(stack))

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")

    def __getitem__(self, name: str) -> Tensor:
        return getattr(self, self._key(name))

    @torch.no_grad()
    def copy_to(self, layers: Sequence[nn.Module]) -> None:
        """Write layer ``k``'s slice of every stack into ``layers[k]``'s own parameter (no gradient links them)."""
        for k, layer in enumerate(layers):
            for name in self.names:
                layer.get_parameter(name).copy_(self[name][k])
