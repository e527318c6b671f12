"""A chain of K planar layers as one autograd node with a hand-written backward.

Mathematically identical to ``FlowSequence([Planar(D)] * K)`` (paper eq. 10-12
applied K times), with the same parameter layout, so the two are
interchangeable.  The layer-by-layer version pays autograd's bookkeeping for
about a dozen tiny tensor operations per layer, forward and backward.  Here
almost everything is a batched matrix product over all K layers at once, and
the unavoidable sequential part is two small operations per layer each way.

The trick: with ``h_j = tanh(a_j)`` and ``z_{k-1} = z_0 + sum_{j<k} u_j h_j``,
the pre-activations satisfy

    a_k = w_k'z_{k-1} + b_k = (w_k'z_0 + b_k) + sum_{j<k} M_kj h_j,   M_kj = w_k'u_j,

a lower-triangular recurrence in the scalars ``h``.  ``M = W U'`` and
``W z_0 + b`` are two batched matrix products; the loop only runs
``h_k = tanh(a_k)`` and ``a <- a + M[:, k] h_k``; finally
``z_K = z_0 + U' h`` and ``ln|det| = sum_k ln|1 + M_kk (1 - h_k^2)|`` (eq. 12).

Backward, for upstream gradients ``g_z`` of ``z_K`` and ``g_l`` of the
log-determinant, with ``s_k = 1 - h_k^2`` and ``d_k = 1 + M_kk s_k``:
``G_k = u_k'g_z - 2 g_l M_kk h_k / d_k`` is the direct gradient of ``h_k``; going
from ``k = K`` down, ``g_{a_k} = s_k G_k`` and ``G_j += M_kj g_{a_k}`` for
``j < k`` (two operations per layer).  Then, all batched:

    dL/db = g_a,   dL/dz_0 = g_z + W' g_a,
    dL/dW = g_a z_0' + tril(g_a h', -1) U + (g_l s / d) u,
    dL/dU = h g_z' + tril(g_a h', -1)' W + (g_l s / d) w.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import FlowLayer
from .planar import constrained_u, planar_inverse


class _PlanarChainFunction(torch.autograd.Function):
    """``(z_0, u_hat, w, b) -> (z_K, sum_k ln|d_k|)``; ``u_hat, w`` are ``(..., K, D)``, ``b`` is ``(..., K)``."""

    @staticmethod
    def forward(ctx, z0: Tensor, u: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        n_layers = u.shape[-2]
        m = w @ u.transpose(-1, -2)  # (..., K, K): m[k, j] = w_k'u_j
        m_by_source = m.transpose(-1, -2).contiguous()  # row j: effect of h_j on every a_k
        a = (w @ z0.unsqueeze(-1)).squeeze(-1) + b  # (..., K): w_k'z_0 + b_k, then accumulates
        h = torch.empty_like(a)
        for k in range(n_layers):
            h_k = torch.tanh(a[..., k])
            h[..., k] = h_k
            a.addcmul_(m_by_source[..., k, :], h_k.unsqueeze(-1))
        z = z0 + (h.unsqueeze(-2) @ u).squeeze(-2)
        slope = 1.0 - h * h
        c = torch.diagonal(m, dim1=-2, dim2=-1)  # w_k'u_k
        d = 1.0 + c * slope
        log_det = torch.log(d.abs()).sum(-1)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(z0, u, w, m, h, slope, c, d)
            ctx.b_shape = b.shape
        return z, log_det

    @staticmethod
    def backward(ctx, grad_z: Tensor, grad_log_det: Tensor):
        z0, u, w, m, h, slope, c, d = ctx.saved_tensors
        n_layers = u.shape[-2]
        g_l = grad_log_det.unsqueeze(-1)  # (..., 1)
        through_c = g_l * slope / d  # (..., K): gradient of c_k = w_k'u_k
        g = (u @ grad_z.unsqueeze(-1)).squeeze(-1) - 2.0 * g_l * c * h / d  # direct gradient of each h_k
        g_a = torch.empty_like(g)
        for k in reversed(range(n_layers)):
            g_a_k = g[..., k] * slope[..., k]
            g_a[..., k] = g_a_k
            g.addcmul_(m[..., k, :], g_a_k.unsqueeze(-1))  # only entries j < k are read later
        g_m = torch.tril(g_a.unsqueeze(-1) * h.unsqueeze(-2), diagonal=-1)  # (..., K, K)
        grad_z0 = grad_z + (g_a.unsqueeze(-2) @ w).squeeze(-2)
        grad_w = g_a.unsqueeze(-1) * z0.unsqueeze(-2) + g_m @ u + through_c.unsqueeze(-1) * u
        grad_u = h.unsqueeze(-1) * grad_z.unsqueeze(-2) + g_m.transpose(-1, -2) @ w + through_c.unsqueeze(-1) * w
        return grad_z0, grad_u.sum_to_size(u.shape), grad_w.sum_to_size(w.shape), g_a.sum_to_size(ctx.b_shape)


class PlanarChain(FlowLayer):
    """``K`` planar layers (eq. 10-12) fused into one node; same maths and parameter layout as
    ``FlowSequence([Planar(dim, amortized)] * length)``.

    Args:
        dim: dimension ``D`` of ``z``.
        length: number of layers ``K``.
        amortized: if True ``forward`` takes ``params`` of shape ``(..., K (2D + 1))``,
            layer after layer ``[u_1, w_1, b_1, u_2, ...]``; else the layers own
            ``u, w`` of shape ``(K, D)`` and ``b`` of shape ``(K,)``.

    Example::

        chain = PlanarChain(dim=40, length=80, amortized=True)
        z_k, log_det = chain(z0, params)   # params: (batch, 80 * 81)
    """

    def __init__(self, dim: int, length: int, amortized: bool = False):
        super().__init__()
        self.dim, self.length, self.amortized = dim, length, amortized
        self.n_params = length * (2 * dim + 1)
        if not amortized:
            bound = 1.0 / dim**0.5
            self.u = torch.nn.Parameter(torch.empty(length, dim).uniform_(-bound, bound))
            self.w = torch.nn.Parameter(torch.empty(length, dim).uniform_(-bound, bound))
            self.b = torch.nn.Parameter(torch.zeros(length))

    def parameters_constrained(self, params: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(u_hat, w, b)`` of shapes ``(..., K, D)``, ``(..., K, D)``, ``(..., K)``, with ``w_k'u_hat_k > -1``."""
        if params is None:
            u, w, b = self.u, self.w, self.b
        else:
            d = self.dim
            per_layer = params.reshape(*params.shape[:-1], self.length, 2 * d + 1)
            u, w, b = per_layer[..., :d], per_layer[..., d : 2 * d], per_layer[..., 2 * d]
        return constrained_u(u, w), w, b

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        return _PlanarChainFunction.apply(z, *self.parameters_constrained(params))

    def inverse(self, y: Tensor, params: Tensor | None = None) -> Tensor:
        self._check_input(y, params)
        u, w, b = self.parameters_constrained(params)
        for k in reversed(range(self.length)):
            y = planar_inverse(y, u[..., k, :], w[..., k, :], b[..., k, None])
        return y
