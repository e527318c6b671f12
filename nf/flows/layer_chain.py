"""What the fused planar and radial chains share: ``K`` layers of one family as one autograd node.

A chain takes its parameters as the layer-by-layer ``FlowSequence`` of the same
family does (global ones stacked over layers, or per sample, layer after layer,
``K`` times ``layer_size`` numbers), runs its forward pass through its
``autograd.Function`` and inverts layer by layer, last layer first.
"""

from __future__ import annotations

from torch import Tensor
from torch.autograd import Function

from nf.flows.base import FlowLayer


class LayerChain(FlowLayer):
    """Base of ``PlanarChain`` and ``RadialChain``.  Subclasses set ``function`` (``z_0, *constrained ->
    (z_K, log-det)``) and implement ``parameters_constrained`` and ``inverse_layer``."""

    function: type[Function]

    def __init__(self, dim: int, length: int, amortized: bool, layer_size: int):
        super().__init__()
        self.dim, self.length, self.amortized = dim, length, amortized
        self.layer_size, self.n_params = layer_size, length * layer_size

    def per_layer(self, params: Tensor) -> Tensor:
        """Per-sample ``params`` ``(..., K layer_size)`` as ``(..., K, layer_size)``."""
        return params.reshape(*params.shape[:-1], self.length, self.layer_size)

    def parameters_constrained(self, params: Tensor | None = None) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def inverse_layer(self, y: Tensor, constrained: tuple[Tensor, ...], k: int) -> Tensor:
        """Layer ``k``'s inverse, given every layer's constrained parameters."""
        raise NotImplementedError

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        return self.function.apply(z, *self.parameters_constrained(params))

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        constrained = self.parameters_constrained(params)
        for k in reversed(range(self.length)):
            y = self.inverse_layer(y, constrained, k)
        return y
