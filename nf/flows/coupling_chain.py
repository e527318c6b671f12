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
    u  <- u + h (M_k^T S_B^T W_out)^T + l_k,    l_k = M_k^T S_B^T b_out

and ``z_K = M_K u`` at the end, followed by NICE's diagonal scaling if the
flow has one.  The output biases ``l_k`` then leave the loop: with
``C_k = l_0 + ... + l_{k-1}`` the loop runs ``v = u - C_k``, which needs no
bias (``v <- v + h (M_k^T S_B^T W_out)^T``) once coupling ``k``'s first layer
gets ``C_k W_k'`` in its bias (``u W_k' = v W_k' + C_k W_k'``, with ``W_k =
W_z S_A M_k``); at the end ``u_K = v_K + C_K``, so ``z_K = M_K v_K + M_K C_K``.
The coupling networks' weights are stacked over couplings
(``StackedParameters``), the first layers' terms ``W_c c_k + b_1 + C_k W_k'`` of
all ``K`` couplings are one batched product, and no split, concatenation, gather or
log-determinant bookkeeping remains per layer (the couplings and mixings are
volume preserving: only the scaling contributes ``sum s``).  The loop over
couplings is one autograd node with a hand-written backward
(``_CouplingLoop``), whose loops run compiled where a C++ compiler is found
(``nf.flows.native``), else in Python (``python_coupling_forward`` and
``python_coupling_backward``, their reference).

``CouplingChain(flow)`` copies the reference flow: its coupling weights into
stacks, its mixings and scaling layer as they are; ``reference()`` gives the
layer-by-layer flow back, with the chain's current weights (``inverse`` runs
through it).  Tested against it in float64 to 1e-10.  The fold's fixed
matrices are rounded to the dtype the chain is built in.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from nf.flows import native
from nf.flows.base import FlowSequence
from nf.flows.nice import AdditiveCoupling, DiagonalScaling, OrthogonalMixing, Permutation
from nf.flows.stacked import FusedChain, StackedParameters


def _mixing_matrix(layer: Permutation | OrthogonalMixing) -> Tensor:
    """The layer as a matrix ``Q`` with ``layer(z) = Q z``."""
    if isinstance(layer, Permutation):
        return torch.eye(layer.dim, dtype=torch.float64)[layer.perm.cpu()]
    return layer.matrix.detach().cpu().double()


class CouplingChain(FusedChain):
    """A NICE flow (couplings, mixings, optional final scaling) with its mixings folded (module docstring).

    Args:
        flow: the reference flow, from ``make_flow("nice-perm" | "nice-orth" [+ "+scale"], ...)`` on an even
            dimension; copied, not shared.

    Example::

        chain = CouplingChain(make_flow("nice-perm", 40, 80, amortized=True))
        z_k, log_det = chain(z0, params)   # the numbers of the reference flow, faster
    """

    def __init__(self, flow: FlowSequence):
        super().__init__()
        self._keep_reference(flow)
        layers = list(self._reference[0].layers)  # its mixings and scaling are the chain's own (a private copy)
        self.scaling = layers.pop() if isinstance(layers[-1], DiagonalScaling) else None
        couplings = [layer for layer in layers if isinstance(layer, AdditiveCoupling)]
        if layers[0::2] != couplings or not all(isinstance(m, (Permutation, OrthogonalMixing)) for m in layers[1::2]):
            raise ValueError("CouplingChain needs couplings alternating with permutations or orthogonal mixings")
        if not all(
            len(c.coupling) >= 3 and isinstance(c.coupling[0], nn.Linear) and isinstance(c.coupling[-1], nn.Linear)
            for c in couplings
        ):
            raise ValueError("CouplingChain needs coupling networks with a hidden layer, starting and ending linear")
        if not all(isinstance(m, nn.ReLU) for c in couplings for m in list(c.coupling)[1::2]):
            raise ValueError(
                "CouplingChain needs coupling networks with ReLU activations (its backward is written for them)"
            )
        if len(layers) != 2 * len(couplings) - 1:
            raise ValueError("CouplingChain needs a coupling last (a trailing mixing would be left out of the fold)")
        if self.dim % 2:
            raise ValueError(f"CouplingChain needs an even dimension (equal coupling halves), got dim={self.dim}")
        self.context, self.swaps = couplings[0].n_params, [c.swap for c in couplings]
        self.linear = list(range(0, len(couplings[0].coupling), 2))  # where the linear layers of m_k sit
        self.networks = StackedParameters([c.coupling for c in couplings])
        self.mixings = nn.ModuleList(layers[1::2])
        self._fold()
        self.register_load_state_dict_post_hook(_fold_again)  # mixings may have been loaded

    def _fold(self) -> None:
        """The fixed matrices of the fold (module docstring), from the current mixings."""
        like, half = self.networks["0.weight"], self.dim // 2
        identity = torch.eye(self.dim, dtype=torch.float64)
        mixing, reads, writes = identity, [], []
        for k, swap in enumerate(self.swaps):
            if k > 0:
                mixing = _mixing_matrix(self.mixings[k - 1]) @ mixing
            first, second = identity[:, :half], identity[:, half:]
            a, b = (second, first) if swap else (first, second)  # columns selecting z_A and z_B
            reads.append(a.T @ mixing)  # (D/2, D): x_A = S_A M_k u
            writes.append(mixing.T @ b)  # (D, D/2): u += M_k^T S_B^T m
        for name, value in (("_reads", torch.stack(reads)), ("_writes", torch.stack(writes)), ("_output", mixing)):
            self.register_buffer(name, value.to(like.device, like.dtype), persistent=False)

    def _copy_weights_to(self, flow: FlowSequence) -> None:
        """Into a copy of the reference flow (whose mixings and scaling are copies of the chain's): the couplings'
        weights."""
        self.networks.copy_to([layer.coupling for layer in flow.layers if isinstance(layer, AdditiveCoupling)])

    def _first_terms(self, params: Tensor | None, w_c: Tensor, first_biases: Tensor) -> Tensor:
        """``W_c c_k + beta_k`` for every coupling, shape (K, ..., H) (``beta_k`` alone, (K, H), without context);
        ``w_c``: the first layers' context columns, (K, H, C); ``first_biases``: the ``beta_k``, (K, H)."""
        if self.context == 0:
            return first_biases
        n, batch = len(self.swaps), params.shape[:-1]
        context = params[..., : n * self.context].reshape(batch.numel(), n, self.context).transpose(0, 1)
        terms = torch.baddbmm(first_biases.unsqueeze(1), context, w_c.transpose(1, 2))  # (K, B, H)
        return terms.view(n, *batch, first_biases.shape[-1])

    def forward(self, z: Tensor, params: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(z, params)
        w_in, out = self.networks["0.weight"], self.linear[-1]
        w_z, w_c = w_in.split([self.dim // 2, self.context], dim=-1)
        first = torch.bmm(w_z, self._reads)  # (K, H, D): W_z S_A M_k
        last = torch.bmm(self._writes, self.networks[f"{out}.weight"])  # (K, D, H): M_k^T S_B^T W_out
        out_biases = torch.bmm(self._writes, self.networks[f"{out}.bias"].unsqueeze(-1)).squeeze(-1)  # (K, D): l_k
        # the output biases leave the loop (module docstring): coupling k's first layer gets C_k W_k' in its bias
        offsets = out_biases.cumsum(0) - out_biases  # C_k = l_0 + ... + l_{k-1}
        first_biases = self.networks["0.bias"] + torch.bmm(offsets.unsqueeze(1), first.transpose(1, 2)).squeeze(1)
        hidden = [self.networks[f"{j}.{kind}"] for j in self.linear[1:-1] for kind in ("weight", "bias")]
        v = _CouplingLoop.apply(z, self._first_terms(params, w_c, first_biases), first, last, *hidden)
        z_k = F.linear(v, self._output, self._output @ out_biases.sum(0))  # M_K v_K + M_K C_K
        if self.scaling is None:
            return z_k, z.new_zeros(z.shape[:-1])
        return self.scaling(z_k, params[..., -self.scaling.n_params :] if self.scaling.amortized else None)


def _fold_again(chain: CouplingChain, keys: object) -> None:
    """After ``load_state_dict``: the fold from the loaded mixings (a function, so that the chain can be pickled)."""
    chain._fold()


def layer_rows(x: Tensor) -> Tensor:
    """``(K, N, width)``: each layer's rows of a tensor stacked over ``K`` layers, batch dimensions flattened."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def right_operand(weights: Tensor) -> Tensor:
    """``W_k'`` of every layer of a ``(K, out, in)`` stack, contiguous: the right operands of ``x W_k'`` (a
    contiguous right operand measured faster than a transposed one in the small products of the fused chains)."""
    return weights.transpose(1, 2).contiguous()


def relu_masks(activations: Tensor) -> Tensor:
    """``relu'`` at every stored ``h = relu(x)``: ``[h > 0] = sign(h)``, as ``h >= 0``.  A product with it costs a
    third of ``threshold_backward`` on small blocks; unlike it, it turns an infinite gradient at an inactive unit
    into NaN rather than 0."""
    return activations.sign()


def layer_weight_grad(left: Tensor, right: Tensor) -> Tensor:
    """``sum_n left_kn' right_kn`` for every layer ``k`` at once: a linear layer's weight gradient, batched."""
    return torch.bmm(layer_rows(left).transpose(1, 2), layer_rows(right))


def python_coupling_forward(
    inputs: Tensor, activations: list[Tensor], first_t: Tensor, hidden_t: list[Tensor], last_t: Tensor, out: Tensor
) -> None:
    """The forward loop of ``_CouplingLoop`` (the compiled one's reference, ``nf.flows.native``): ``inputs[0]``
    holds ``v_0`` and each activation stack its biases (the first layer's terms ``t_k``); fills ``inputs[k]`` (``v``
    before coupling ``k``) and the activations, and writes ``v_K`` into ``out``.  Stacks are ``(K, rows, width)``;
    ``*_t`` are right operands (transposed weights), stacked over couplings.

    Each step is one fused multiply-add (``addmm``) into a stored stack, with a contiguous right operand."""
    v_k, h_k = inputs.unbind(0), [h.unbind(0) for h in activations]
    first_k, last_k, weights_k = first_t.unbind(0), last_t.unbind(0), [w.unbind(0) for w in hidden_t]
    for k in range(len(v_k)):
        h = h_k[0][k].addmm_(v_k[k], first_k[k]).relu_()
        for j, weights in enumerate(weights_k):
            h = h_k[j + 1][k].addmm_(h, weights[k]).relu_()
        torch.addmm(v_k[k], h, last_k[k], out=v_k[k + 1] if k + 1 < len(v_k) else out)


def python_coupling_backward(
    outputs: Tensor,
    errors: list[Tensor],
    masks: list[Tensor],
    first: Tensor,
    hidden: list[Tensor],
    last: Tensor,
    grad_in: Tensor,
) -> None:
    """The backward recursion of ``_CouplingLoop`` (the compiled one's reference): from ``g = dL/dv_K`` in the last
    slot of ``outputs``, fills the other slots (``g`` after each coupling) and the ``errors`` at every
    pre-activation, and writes ``dL/dv_0`` into ``grad_in``; ``masks`` are the stored ``[h > 0]``."""
    g_k, e_k, m_k = outputs.unbind(0), [e.unbind(0) for e in errors], [m.unbind(0) for m in masks]
    first_k, last_k, weights_k = first.unbind(0), last.unbind(0), [w.unbind(0) for w in hidden]
    for k in reversed(range(len(g_k))):
        e = torch.mm(g_k[k], last_k[k], out=e_k[-1][k]).mul_(m_k[-1][k])
        for j in reversed(range(len(weights_k))):
            e = torch.mm(e, weights_k[j][k], out=e_k[j][k]).mul_(m_k[j][k])
        torch.addmm(g_k[k], e, first_k[k], out=g_k[k - 1] if k > 0 else grad_in)


PYTHON_LOOPS = SimpleNamespace(coupling_forward=python_coupling_forward, coupling_backward=python_coupling_backward)


class _CouplingLoop(torch.autograd.Function):
    """``v_K`` from ``v_0 = u_0`` through the folded couplings without output biases (module docstring), with a
    hand-written backward.

    Per coupling ``k``: ``h_0 = relu(v W_k' + t_k)``, ``h_j = relu(h_{j-1} V_jk' + c_jk)``, ``v <- v + h_J L_k'``,
    with ``t_k`` the first layer's terms (context, bias and the output biases folded in).  Backward, from ``g =
    dloss/dv`` after coupling ``k``: ``e = (g L_k) * [h_J > 0]`` back through the hidden layers (``e <- (e V_jk) *
    [h_{j-1} > 0]``), ``dt_k = e`` and ``g <- g + e W_k``.  Only this recursion runs coupling by coupling; the
    weight gradients ``dL_k = g' h_J``, ``dV_jk = e' h_{j-1}``, ``dc_jk = sum e`` and ``dW_k = e' v_{k-1}`` of all
    couplings are then batched matrix products (one call each, instead of one per coupling).  Each forward step is
    one multiply-add into a tensor stacked over couplings, and each backward step a matrix product and a product
    with the stored ``[h > 0]``, so nothing is copied to batch the gradients; the steps run compiled
    (``nf.flows.native``) or in Python (``python_coupling_forward``, ``python_coupling_backward``).  First
    derivatives only.
    """

    @staticmethod
    def forward(ctx, v: Tensor, terms: Tensor, first: Tensor, last: Tensor, *hidden: Tensor) -> Tensor:
        n_layers, dim = first.shape[0], v.shape[-1]
        batch = torch.broadcast_shapes(v.shape[:-1], terms.shape[1:-1])
        rows, depth = batch.numel(), 1 + len(hidden) // 2
        widths = [first.shape[1], *(w.shape[1] for w in hidden[0::2])]
        inputs = v.new_empty(n_layers, rows, dim)  # v before coupling k
        inputs[0] = v.expand(*batch, dim).reshape(rows, dim)
        # h_j of coupling k: each buffer starts as its bias (the terms t_k for the first), added to in place
        activations = []
        for bias, width in zip([terms, *hidden[1::2]], widths):
            buffer = v.new_empty(n_layers, rows, width)
            buffer.view(n_layers, *batch, width).copy_(bias.view(aligned_shape(bias.shape, batch)))
            activations.append(buffer)
        out = v.new_empty(rows, dim)
        loops = native.loops(v) or PYTHON_LOOPS
        loops.coupling_forward(
            inputs,
            activations,
            right_operand(first),
            [right_operand(w) for w in hidden[0::2]],
            right_operand(last),
            out,
        )
        ctx.shapes, ctx.depth = (v.shape, terms.shape, batch), depth
        ctx.save_for_backward(first, last, *hidden, inputs, *activations)
        return out.view(*batch, dim)

    @staticmethod
    @once_differentiable  # the backward writes into buffers (out=): it cannot itself be differentiated
    def backward(ctx, grad: Tensor):
        first, last, *rest = ctx.saved_tensors
        (v_shape, terms_shape, batch), depth = ctx.shapes, ctx.depth
        hidden, inputs, activations = rest[: 2 * (depth - 1)], rest[2 * (depth - 1)], rest[2 * (depth - 1) + 1 :]
        n_layers, rows, dim = inputs.shape
        outputs = grad.new_empty(inputs.shape)  # g after coupling k
        errors = [grad.new_empty(h.shape) for h in activations]  # e at the pre-activation of h_j of coupling k
        outputs[-1] = grad.reshape(rows, dim)
        g = grad.new_empty(rows, dim)  # dL/dv_0
        loops = native.loops(grad) or PYTHON_LOOPS
        masks = [relu_masks(h) for h in activations]
        loops.coupling_backward(outputs, errors, masks, first, list(hidden[0::2]), last, g)
        g = g.view(*batch, dim)

        hidden_grads = []
        for j in range(depth - 1):
            hidden_grads += [layer_weight_grad(errors[j + 1], activations[j]), errors[j + 1].sum(1)]
        per_sample = errors[0].view(n_layers, *batch, terms_shape[-1])
        g_terms = per_sample.sum_to_size(aligned_shape(terms_shape, batch)).view(terms_shape)
        g_first = layer_weight_grad(errors[0], inputs)
        g_last = layer_weight_grad(outputs, activations[-1])
        return g.sum_to_size(v_shape), g_terms, g_first, g_last, *hidden_grads


def aligned_shape(shape: torch.Size, batch: torch.Size) -> torch.Size:
    """The shape of a ``(K, ..., width)`` stack with ones inserted after ``K``: its batch dimensions lined up with
    ``batch``'s from the right."""
    return torch.Size([shape[0], *[1] * (len(batch) + 2 - len(shape)), *shape[1:]])
