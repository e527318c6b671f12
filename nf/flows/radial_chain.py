"""A chain of K radial layers as one autograd node with a hand-written backward.

Mathematically identical to ``FlowSequence([Radial(D)] * K)`` (paper eq. 13-14
applied K times), with the same parameter layout, so the two are
interchangeable.  Layer by layer, autograd records about fifteen tiny
operations per layer, forward and backward; here the forward pass does five
operations per layer and the backward pass five, and everything that does not
depend on the running ``z`` (the log-determinants, their derivatives, the
parameter gradients) is computed for all K layers at once.

Per layer, with ``e = z - z0``, ``r = |e|``, ``q = alpha + r`` and ``t = beta / q``
(``= beta h(alpha, r)``, eq. 13):

    y = z + t e,     ln|det| = (D - 1) ln(1 + t) + ln(1 + t alpha / q)      (eq. 14)

Backward, for upstream gradients ``g_y`` of ``y`` and ``g_l`` of the
log-determinant, going from ``k = K`` down to 1 (``m = 1 + t``,
``n = 1 + t alpha / q``):

    dL/dq   = -(t / q) g_y'e + g_l dld/dq,   dld/dq = -(D - 1) t / (q m) - 2 t alpha / (q^2 n)
    dL/dz   = m g_y + (dL/dq / r) e                     (now the gradient of y_{k-1})
    dL/dz0  = -t g_y - (dL/dq / r) e
    dL/dalpha = dL/dq + g_l t / (q n)
    dL/dbeta  = g_y'e / q + g_l ((D - 1) / (q m) + alpha / (q^2 n))

(``r`` depends on ``z`` through ``e / r``, and ``q = alpha + r``.)  Only the first
two lines are sequential.  The constraints ``alpha = softplus(a)``,
``beta = -alpha + softplus(b)`` (appendix A.2) stay outside, in autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nf.flows.layer_chain import LayerChain
from nf.flows.radial import constrained_alpha_beta, radial_inverse


class _RadialChainFunction(torch.autograd.Function):
    """``(z_0, z0, alpha, beta) -> (z_K, sum of ln|det|)``; ``z0`` is ``(..., K, D)``, ``alpha, beta`` ``(..., K)``."""

    @staticmethod
    def forward(ctx, z: Tensor, centres: Tensor, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
        keep = any(ctx.needs_input_grad)
        offsets, radii, steps = [], [], []
        for k in range(centres.shape[-2]):
            offset = z - centres[..., k, :]
            radius = torch.linalg.vector_norm(offset, dim=-1)
            step = beta[..., k] / (alpha[..., k] + radius)  # t = beta h(alpha, r)
            z = torch.addcmul(z, offset, step.unsqueeze(-1))
            if keep:
                offsets.append(offset)
            radii.append(radius)
            steps.append(step)
        r, t = torch.stack(radii, dim=-1), torch.stack(steps, dim=-1)  # (..., K)
        q = alpha + r
        log_det = ((z.shape[-1] - 1) * torch.log1p(t) + torch.log1p(t * alpha / q)).sum(-1)
        if keep:
            ctx.save_for_backward(torch.stack(offsets, dim=-2), alpha, beta, r, q, t)
            ctx.shapes = (centres.shape, alpha.shape, beta.shape)
        return z, log_det

    @staticmethod
    def backward(ctx, grad_z: Tensor, grad_log_det: Tensor):
        offsets, alpha, beta, r, q, t = ctx.saved_tensors
        centres_shape, alpha_shape, beta_shape = ctx.shapes
        dims_less_one = offsets.shape[-1] - 1
        g_l = grad_log_det.unsqueeze(-1)  # (..., 1)
        m, n = 1 + t, 1 + t * alpha / q
        via_dot = -t / q  # dL/dq per unit of g_y'e
        via_log_det = g_l * (-dims_less_one * t / (q * m) - 2 * t * alpha / (q * q * n))  # g_l dld/dq
        grads_y, dots, grads_q = [], [], []
        for k in reversed(range(offsets.shape[-2])):
            offset = offsets[..., k, :]
            grads_y.append(grad_z)
            dot = torch.linalg.vecdot(grad_z, offset)
            g_q = torch.addcmul(via_log_det[..., k], via_dot[..., k], dot)
            grad_z = torch.addcmul(grad_z * m[..., k, None], offset, (g_q / r[..., k]).unsqueeze(-1))
            dots.append(dot)
            grads_q.append(g_q)
        g_y = torch.stack(grads_y[::-1], dim=-2)  # (..., K, D): gradient of y_k
        dot, g_q = torch.stack(dots[::-1], dim=-1), torch.stack(grads_q[::-1], dim=-1)
        grad_centres = -(g_y * t.unsqueeze(-1) + offsets * (g_q / r).unsqueeze(-1))
        grad_alpha = g_q + g_l * t / (q * n)
        grad_beta = dot / q + g_l * (dims_less_one / (q * m) + alpha / (q * q * n))
        return (
            grad_z,
            grad_centres.sum_to_size(centres_shape),
            grad_alpha.sum_to_size(alpha_shape),
            grad_beta.sum_to_size(beta_shape),
        )


class RadialChain(LayerChain):
    """``K`` radial layers (eq. 13-14) fused into one node; same maths and parameter layout as
    ``FlowSequence([Radial(dim, amortized)] * length)``.

    Args:
        dim: dimension ``D`` of ``z``.
        length: number of layers ``K``.
        amortized: if True ``forward`` takes ``params`` of shape ``(..., K (D + 2))``, layer after layer
            ``[z0_1, a_1, b_1, z0_2, ...]`` (``a, b`` the raw values behind ``alpha, beta``); else the layers own
            ``z0`` of shape ``(K, D)`` and ``a, b`` of shape ``(K,)``.

    Example::

        chain = RadialChain(dim=40, length=80, amortized=True)
        z_k, log_det = chain(z0, params)   # params: (batch, 80 * 42)
    """

    function = _RadialChainFunction

    def __init__(self, dim: int, length: int, amortized: bool = False):
        super().__init__(dim, length, amortized, layer_size=dim + 2)
        if not amortized:
            bound = 1.0 / dim**0.5
            self.z0 = torch.nn.Parameter(torch.empty(length, dim).uniform_(-bound, bound))
            self.a = torch.nn.Parameter(torch.empty(length).uniform_(-bound, bound))
            self.b = torch.nn.Parameter(torch.empty(length).uniform_(-bound, bound))

    def parameters_constrained(self, params: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(z0, alpha, beta)`` of shapes ``(..., K, D)``, ``(..., K)``, ``(..., K)``, with ``beta >= -alpha``."""
        if params is None:
            z0, a, b = self.z0, self.a, self.b
        else:
            d, per_layer = self.dim, self.per_layer(params)
            z0, a, b = per_layer[..., :d], per_layer[..., d], per_layer[..., d + 1]
        return (z0, *constrained_alpha_beta(a, b))

    def inverse_layer(self, y: Tensor, constrained: tuple[Tensor, ...], k: int) -> Tensor:
        z0, alpha, beta = constrained
        return radial_inverse(y, z0[..., k, :], alpha[..., k, None], beta[..., k, None])
