"""The diagonal Gaussian used as base density ``q_0`` (paper eq. 7)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG_2PI = math.log(2.0 * math.pi)


class DiagonalGaussian:
    """``N(loc, diag(exp(log_scale))^2)`` over the last dimension.

    ``loc`` and ``log_scale`` broadcast together; they may be global
    parameters of shape ``(D,)`` or per-sample outputs of an inference
    network of shape ``(batch, D)``.
    """

    def __init__(self, loc: Tensor, log_scale: Tensor):
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale)

    @classmethod
    def standard(
        cls, dim: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> "DiagonalGaussian":
        """The standard normal ``N(0, I_dim)``."""
        zeros = torch.zeros(dim, dtype=dtype, device=device)
        return cls(zeros, zeros)

    @property
    def dim(self) -> int:
        return self.loc.shape[-1]

    def rsample(
        self, sample_shape: torch.Size | tuple[int, ...] = (), generator: torch.Generator | None = None
    ) -> Tensor:
        """Reparametrised sample ``loc + exp(log_scale) * eps``, shape ``sample_shape + loc.shape``."""
        shape = torch.Size(sample_shape) + self.loc.shape
        return self.transform(torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator))

    def transform(self, eps: Tensor) -> Tensor:
        """``loc + exp(log_scale) * eps``: standard normal draws ``eps`` made draws of this Gaussian."""
        return self.loc + torch.exp(self.log_scale) * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """``ln N(z; loc, diag(sigma^2))`` summed over the last dimension."""
        standardized = (z - self.loc) * torch.exp(-self.log_scale)
        return -0.5 * (standardized**2 + _LOG_2PI).sum(-1) - self.log_scale.sum(-1)

    def entropy(self) -> Tensor:
        """Differential entropy ``sum_i (log sigma_i + (1 + ln 2 pi) / 2)``."""
        return (self.log_scale + 0.5 * (1.0 + _LOG_2PI)).sum(-1)
