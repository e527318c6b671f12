"""What the fused NICE and convolutional chains share: weights stacked over layers, and their reference flow.

A fused chain (``CouplingChain``, ``ConvChain``) computes its ``K`` layers from
stacked weights: ``W[k]`` is layer ``k``'s copy of a weight.  Owning the stacks
as parameters, rather than stacking the layers' own parameters at every
forward pass, spares each update one stacking per weight, its backward (one
gradient per layer and per weight) and, in the optimiser and the gradient
clipping, a round of work per layer: a NICE chain of 80 couplings has 480
small tensors but only 6 stacks.

* ``StackedParameters(layers)`` copies the layers' current values into the
  stacks; ``copy_to(layers)`` writes them back into layer-by-layer modules.
* ``FusedChain`` keeps a private copy of the layer-by-layer flow it was built
  from; ``reference()`` returns that flow with the chain's current weights: the
  readable computation the chain is tested against, and its ``inverse``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nf.flows.base import FlowLayer, FlowSequence


class StackedParameters(nn.Module):
    """Every parameter of ``layers`` (modules of one structure), stacked over the layers.

    The stack of the parameter named ``name`` in each layer (``"0.weight"`` of an ``nn.Sequential``) is
    ``self[name]``, of shape ``(K, *shape)``; it is registered with the dots replaced by underscores (``0_weight``).

    Example::

        stacks = StackedParameters([coupling.network for coupling in couplings])
        stacks["0.weight"]   # (K, H, D_in): the first linear layer of every coupling network
    """

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        if not layers:
            raise ValueError("StackedParameters needs at least one layer")
        self.names = [name for name, _ in layers[0].named_parameters()]
        shapes = [[(name, tuple(p.shape)) for name, p in layer.named_parameters()] for layer in layers]
        for k, layer_shapes in enumerate(shapes):
            if layer_shapes != shapes[0]:
                raise ValueError(
                    f"StackedParameters needs layers of one structure: layer {k} has parameters "
                    f"{layer_shapes}, layer 0 {shapes[0]}"
                )
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
        for name in self.names:
            if len(layers) != self[name].shape[0]:
                raise ValueError(f"copy_to needs {self[name].shape[0]} layers, got {len(layers)}")
            for k, layer in enumerate(layers):
                layer.get_parameter(name).copy_(self[name][k])


class FusedChain(FlowLayer):
    """A flow computed from stacked weights, which keeps a private copy of the layer-by-layer flow it was built from.

    Subclasses call ``_keep_reference(flow)`` and implement ``_copy_weights_to(flow)``.
    """

    def _keep_reference(self, flow: FlowSequence) -> None:
        self.dim, self.n_params, self.amortized = flow.dim, flow.n_params, flow.amortized
        self._reference = (copy.deepcopy(flow),)  # a tuple: not registered; its layers are only a template

    def _copy_weights_to(self, flow: FlowSequence) -> None:
        raise NotImplementedError

    def reference(self) -> FlowSequence:
        """The layer-by-layer flow this chain computes: a new ``FlowSequence`` holding copies of the chain's current
        weights and fixed layers (no gradient reaches the chain through it)."""
        flow = copy.deepcopy(self._reference[0]).to(next(self.parameters()))
        self._copy_weights_to(flow)
        return flow

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        """``f^{-1}(y)``, by the layer-by-layer flow (``reference``, rebuilt at every call)."""
        self._check_input(y, params)
        return self.reference().inverse(y, params)
