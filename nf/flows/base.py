"""The interface shared by every flow layer, and their composition.

A flow layer is an invertible map ``f: R^D -> R^D``.  Every layer here is an
``nn.Module`` whose ``forward(z, params=None)`` returns ``(f(z), log|det df/dz|)``
with one log-determinant per sample, and whose ``inverse(y, params=None)``
returns ``f^{-1}(y)`` (in closed form, or by a documented numerical solve).

Parameters come from one of two places (paper section 4.1 and 6.2):

* **global**: the layer owns them as ``nn.Parameter`` (``amortized=False``),
  as in the toy-density experiments;
* **amortised**: an inference network emits them per data point and passes a
  ``(batch, n_params)`` tensor as ``params`` (``amortized=True``), as in the
  paper's MNIST experiments.  ``n_params`` says how many numbers a layer needs.

A sequence of layers (``FlowSequence``) implements eq. 7 of the paper:

    z_K = f_K o ... o f_1 (z_0),
    ln q_K(z_K) = ln q_0(z_0) - sum_k ln |det df_k/dz_{k-1}|.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn


class FlowLayer(nn.Module):
    """Base class of an invertible layer acting on the last dimension.

    Subclasses set ``dim`` and ``n_params`` (the number of per-sample
    parameters the layer takes when amortised; zero for layers whose
    parameters are always global or fixed) and implement ``forward``.
    """

    dim: int
    n_params: int = 0
    amortized: bool = False

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(f(z), log|det df/dz|)``; ``z`` has shape ``(..., dim)``."""
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        """Return ``f^{-1}(y)``."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse")

    def _check_input(self, z: Tensor, params: Tensor | None) -> None:
        if z.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} acts on dimension {self.dim}, "
                f"got an input whose last dimension is {z.shape[-1]}"
            )
        if self.amortized:
            if params is None:
                raise ValueError(
                    f"{type(self).__name__} is amortised: pass its {self.n_params} per-sample parameters as params"
                )
            if params.shape[-1] != self.n_params:
                raise ValueError(
                    f"{type(self).__name__} takes {self.n_params} parameters per "
                    f"sample, got params whose last dimension is {params.shape[-1]}"
                )
        elif params is not None:
            raise ValueError(f"{type(self).__name__} has global parameters; params must be None")


class FlowSequence(FlowLayer):
    """The composition ``f_K o ... o f_1`` (paper eq. 7); log-dets add.

    When some layers are amortised, ``params`` is one ``(batch, n_params)``
    tensor, the concatenation of each amortised layer's parameters in order.
    """

    def __init__(self, layers: Iterable[FlowLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if len(self.layers) == 0:
            raise ValueError("a FlowSequence needs at least one layer")
        dims = {layer.dim for layer in self.layers}
        if len(dims) != 1:
            raise ValueError(f"all layers must act on the same dimension, got {sorted(dims)}")
        self.dim = dims.pop()
        self.n_params = sum(layer.n_params for layer in self.layers if layer.amortized)
        self.amortized = self.n_params > 0

    def __len__(self) -> int:
        return len(self.layers)

    def _split(self, params: Tensor | None) -> list[Tensor | None]:
        if not self.amortized:
            return [None] * len(self.layers)
        sizes = [layer.n_params if layer.amortized else 0 for layer in self.layers]
        chunks = torch.split(params, sizes, dim=-1)
        return [c if layer.amortized else None for c, layer in zip(chunks, self.layers)]

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        log_det = z.new_zeros(z.shape[:-1])
        for layer, p in zip(self.layers, self._split(params)):
            z, ld = layer(z, p)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        for layer, p in reversed(list(zip(self.layers, self._split(params)))):
            y = layer.inverse(y, p)
        return y

    def trajectory(self, z: Tensor, params: Tensor | None = None) -> Sequence[Tensor]:
        """Return ``[z_0, z_1, ..., z_K]``: the sample after each layer."""
        self._check_input(z, params)
        out = [z]
        for layer, p in zip(self.layers, self._split(params)):
            z, _ = layer(z, p)
            out.append(z)
        return out
