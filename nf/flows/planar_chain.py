"""A chain of K planar layers as one autograd node with a hand-written backward.

Mathematically identical to ``FlowSequence([Planar(D)] * K)`` (paper eq. 10-12
applied K times), with the same parameter layout, so the two are
interchangeable.  The layer-by-layer version pays autograd's bookkeeping for
about a dozen tiny tensor operations per layer, forward and backward; here the
forward pass does four operations per layer, everything that does not depend
on the running ``z`` (``w'u_hat``, the log-determinants, the parameter
gradients) is computed for all K layers at once, and the backward pass needs
four operations per layer.

Backward, with ``a_k = w_k'z_{k-1} + b_k``, ``h_k = tanh(a_k)``,
``s_k = 1 - h_k^2``, ``c_k = w_k'u_k`` and ``d_k = 1 + c_k s_k`` (so that
``ln|det| = sum_k ln|d_k|``), for upstream gradients ``g_z`` of ``z_K`` and
``g_l`` of the log-determinant, going from ``k = K`` down to 1:

    dL/dh_k   = g_z' u_k - 2 g_l c_k h_k / d_k
    dL/da_k   = s_k dL/dh_k                      (= dL/db_k)
    g_z      <- g_z + dL/da_k w_k                (now dL/dz_{k-1})
    dL/du_k   = g_z(k) h_k + g_l s_k / d_k w_k
    dL/dw_k   = dL/da_k z_{k-1} + g_l s_k / d_k u_k

where ``g_z(k)`` is the gradient of ``z_k``.  Only the first three lines are
sequential.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nf.flows.layer_chain import LayerChain
from nf.flows.planar import constrained_u, planar_inverse


class _PlanarChainFunction(torch.autograd.Function):
    """``(z_0, u_hat, w, b) -> (z_K, sum_k ln|d_k|)``; ``u_hat, w`` are ``(..., K, D)``, ``b`` is ``(..., K)``."""

    @staticmethod
    def forward(ctx, z0: Tensor, u: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        n_layers = u.shape[-2]
        keep = any(ctx.needs_input_grad)
        z = z0
        inputs, activations = [], []
        for k in range(n_layers):
            w_k, u_k = w[..., k, :], u[..., k, :]
            h = torch.tanh(torch.linalg.vecdot(w_k, z) + b[..., k])
            if keep:
                inputs.append(z)
            activations.append(h)
            z = torch.addcmul(z, u_k, h.unsqueeze(-1))
        h_all = torch.stack(activations, dim=-1)  # (..., K)
        slope = 1.0 - h_all * h_all
        c = torch.linalg.vecdot(w, u)  # (..., K), broadcast over sample dims below
        d = 1.0 + c * slope
        log_det = torch.log(d.abs()).sum(-1)
        if keep:
            ctx.save_for_backward(torch.stack(inputs, dim=-2), u, w, h_all, slope, c, d)
            ctx.b_shape = b.shape
        return z, log_det

    @staticmethod
    def backward(ctx, grad_z: Tensor, grad_log_det: Tensor):
        z_in, u, w, h_all, slope, c, d = ctx.saved_tensors
        n_layers = u.shape[-2]
        g_l = grad_log_det.unsqueeze(-1)  # (..., 1)
        dlogdet_dh = -2.0 * g_l * c * h_all / d  # (..., K)
        grads_a, grads_z = [None] * n_layers, [None] * n_layers
        g_z = grad_z
        for k in reversed(range(n_layers)):
            grads_z[k] = g_z
            g_a = (torch.linalg.vecdot(g_z, u[..., k, :]) + dlogdet_dh[..., k]) * slope[..., k]
            grads_a[k] = g_a
            g_z = torch.addcmul(g_z, w[..., k, :], g_a.unsqueeze(-1))
        g_a = torch.stack(grads_a, dim=-1)  # (..., K)
        g_zk = torch.stack(grads_z, dim=-2)  # (..., K, D): gradient of z_k
        through_c = (g_l * slope / d).unsqueeze(-1)  # (..., K, 1)
        grad_u = g_zk * h_all.unsqueeze(-1) + through_c * w
        grad_w = g_a.unsqueeze(-1) * z_in + through_c * u
        return g_z, grad_u.sum_to_size(u.shape), grad_w.sum_to_size(w.shape), g_a.sum_to_size(ctx.b_shape)


class PlanarChain(LayerChain):
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

    function = _PlanarChainFunction

    def __init__(self, dim: int, length: int, amortized: bool = False):
        super().__init__(dim, length, amortized, layer_size=2 * dim + 1)
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
            d, per_layer = self.dim, self.per_layer(params)
            u, w, b = per_layer[..., :d], per_layer[..., d : 2 * d], per_layer[..., 2 * d]
        return constrained_u(u, w), w, b

    def inverse_layer(self, y: Tensor, constrained: tuple[Tensor, ...], k: int) -> Tensor:
        u, w, b = constrained
        return planar_inverse(y, u[..., k, :], w[..., k, :], b[..., k, None])
