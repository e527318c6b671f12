"""A NICE flow with its fixed mixings folded into the coupling networks (same maths, fewer operations).

The reference NICE flow (``make_flow("nice-perm" | "nice-orth", ...)``) is a
``FlowSequence`` of additive couplings ``x_B <- x_B + m_k(x_A, c_k)`` with a
fixed permutation or orthogonal matrix between consecutive couplings.  Every
mixing is an orthogonal matrix ``Q`` (a permutation matrix is one), so the
state before coupling ``k`` is ``x_k = M_k u`` with ``M_k = Q_k ... Q_2`` and
``u`` the running sample in the coordinates of ``z_0``.  Coupling ``k`` reads
``x_A = S_A M_k u`` and adds ``M_k^T S_B^T m`` to ``u`` (``S_A``, ``S_B`` select the
halves), so with the first layer of ``m_k`` taking ``W_z S_A M_k`` and the last
``M_k^T S_B^T W_out`` the whole step is three dense products on ``u``:

    h   = relu(u (W_z S_A M_k)^T + W_c c_k + b_1)
    ... (the hidden layers of m_k, unchanged)
    u  <- u + h (M_k^T S_B^T W_out)^T + M_k^T S_B^T b_out

and ``z_K = M_K u`` at the end, followed by NICE's diagonal scaling if the
flow has one.  The context terms ``W_c c_k + b_1`` of all ``K`` couplings are
computed in one batched product.  No split, concatenation, gather or
log-determinant bookkeeping remains per layer (the couplings and mixings are
volume preserving: only the scaling contributes ``sum s``).

``CouplingChain`` holds the reference flow's own layers, so parameters,
``state_dict`` keys, ``inverse`` and ``trajectory`` are the reference's; only
``forward`` is the folded computation, tested against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FlowSequence
from .nice import AdditiveCoupling, DiagonalScaling, OrthogonalMixing, Permutation


def _mixing_matrix(layer: Permutation | OrthogonalMixing) -> Tensor:
    """The layer as a matrix ``Q`` with ``layer(z) = Q z``."""
    if isinstance(layer, Permutation):
        return torch.eye(layer.dim, dtype=torch.float64)[layer.perm.cpu()]
    return layer.matrix.detach().cpu().double()


class CouplingChain(FlowSequence):
    """A NICE ``FlowSequence`` (couplings, mixings, optional final scaling) whose forward pass folds the mixings.

    Args:
        flow: the reference flow, from ``make_flow("nice-perm" | "nice-orth" [+ "+scale"], ...)``; its layers are
            shared, not copied.

    Example::

        chain = CouplingChain(make_flow("nice-perm", 40, 80, amortized=True))
        z_k, log_det = chain(z0, params)   # the numbers of the reference flow, faster
    """

    def __init__(self, flow: FlowSequence):
        super().__init__(flow.layers)
        layers = list(self.layers)
        self.scaled = isinstance(layers[-1], DiagonalScaling)
        if self.scaled:
            layers.pop()
        self.couplings = [layer for layer in layers if isinstance(layer, AdditiveCoupling)]  # a list: not re-registered
        if layers[0::2] != self.couplings or not all(isinstance(m, (Permutation, OrthogonalMixing)) for m in layers[1::2]):
            raise ValueError("CouplingChain needs couplings alternating with permutations or orthogonal mixings")
        if not all(len(c.coupling) >= 3 and isinstance(c.coupling[0], nn.Linear) and isinstance(c.coupling[-1], nn.Linear)
                   for c in self.couplings):
            raise ValueError("CouplingChain needs coupling networks with a hidden layer, starting and ending linear")
        self.context = self.couplings[0].n_params
        dim = self.dim
        mixing = torch.eye(dim, dtype=torch.float64)
        reads, writes = [], []
        for k, coupling in enumerate(self.couplings):
            if k > 0:
                mixing = _mixing_matrix(layers[2 * k - 1]) @ mixing
            identity = torch.eye(dim, dtype=torch.float64)
            a, b = coupling._split(identity)  # columns of the identity that select z_A and z_B
            reads.append(a.T @ mixing)  # (n_cond, D): x_A = S_A M_k u
            writes.append(mixing.T @ b)  # (D, n_update): u += M_k^T S_B^T m
        dtype = torch.get_default_dtype()
        self._groups = [list(range(0, len(self.couplings), 2)), list(range(1, len(self.couplings), 2))]
        for parity, group in enumerate(self._groups):
            if group:
                self.register_buffer(f"_reads{parity}", torch.stack([reads[k] for k in group]).to(dtype), persistent=False)
                self.register_buffer(f"_writes{parity}", torch.stack([writes[k] for k in group]).to(dtype), persistent=False)
        self.register_buffer("_output", mixing.to(dtype), persistent=False)  # z_K = M_K u

    def _folded_weights(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per coupling: the first layer's weight on ``u``, the last layer's weight and bias onto ``u``."""
        n = len(self.couplings)
        first, last, bias = [None] * n, [None] * n, [None] * n
        for parity, group in enumerate(self._groups):
            if not group:
                continue
            reads, writes = getattr(self, f"_reads{parity}"), getattr(self, f"_writes{parity}")
            n_cond = reads.shape[1]
            w_z = torch.stack([self.couplings[k].coupling[0].weight[:, :n_cond] for k in group])
            w_out = torch.stack([self.couplings[k].coupling[-1].weight for k in group])
            b_out = torch.stack([self.couplings[k].coupling[-1].bias for k in group])
            for k, a, w, c in zip(group, torch.bmm(w_z, reads).unbind(0), torch.bmm(writes, w_out).unbind(0),
                                  torch.bmm(writes, b_out.unsqueeze(-1)).squeeze(-1).unbind(0)):
                first[k], last[k], bias[k] = a, w, c
        return first, last, bias

    def _context_terms(self, params: Tensor | None, hidden: int) -> list[Tensor]:
        """``W_c c_k + b_1`` for every coupling (just ``b_1`` without context), from one batched product."""
        biases = torch.stack([c.coupling[0].bias for c in self.couplings])  # (K, H)
        if self.context == 0:
            return list(biases.unbind(0))
        n = len(self.couplings)
        context = params[..., : n * self.context].reshape(*params.shape[:-1], n, self.context)
        n_conds = [c.n_cond for c in self.couplings]
        w_c = torch.stack([c.coupling[0].weight[:, n_cond:] for c, n_cond in zip(self.couplings, n_conds)])  # (K, H, C)
        terms = torch.einsum("...kc,khc->...kh", context, w_c) + biases
        return list(terms.unbind(-2))

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        first, last, bias = self._folded_weights()
        terms = self._context_terms(params, first[0].shape[0])
        u = z
        for k, coupling in enumerate(self.couplings):
            h = coupling.coupling[1](terms[k] + F.linear(u, first[k]))
            for module in list(coupling.coupling)[2:-1]:
                h = module(h)
            u = u + F.linear(h, last[k], bias[k])
        z_k = F.linear(u, self._output)
        if not self.scaled:
            return z_k, z.new_zeros(z.shape[:-1])
        scaling = self.layers[-1]
        return scaling(z_k, params[..., -scaling.n_params :] if scaling.amortized else None)
