"""Where an amortised flow starts: at the inference network's random outputs, or at the identity map.

With the ``random`` start (the book's first runs) the head that emits the flow's per-image parameters is initialised
like any linear layer, so at the first update every flow layer is some random map, further from the identity the
longer the flow.  The ``identity`` start zeroes the head's weights and sets its biases so that every layer is the
identity for every image, ``f_k(z) = z`` with ``ln|det df_k/dz| = 0``, and so ``q_K = q_0`` at the first update:

* planar (eq. 10): ``f(z) = z + u_hat tanh(w'z + b)`` is the identity when ``u_hat = 0``.  The constraint map of
  appendix A.1, ``u_hat = u + (m(w'u) - w'u) w / ||w||^2`` with ``m(x) = -1 + softplus(x)``, gives ``u_hat = 0``
  for ``u = c w`` exactly when ``m(c ||w||^2) = 0``, i.e. ``c ||w||^2 = ln(e - 1)``.  (``u = 0`` does *not* give the
  identity: ``u_hat = m(0) w / ||w||^2``.)  Each layer keeps the direction of its head's random bias draw as a unit
  ``w``, so the layers start distinct and no extra random numbers are drawn; ``b = 0``.
* radial (eq. 13): ``f(z) = z + beta (z - z0) / (alpha + r)`` with ``alpha = softplus(a)`` and
  ``beta = -alpha + softplus(b)`` (appendix A.2) is the identity when ``b = a``; the start takes
  ``z0 = 0, a = b = 0``.
* conv (the extension; ``nf.flows.circular``, ``nf.flows.conv_coupling``): raw spectrum magnitudes and phases of 0
  give the kernel ``delta`` (``|W_k| = 1``); the coupling networks already start with a zero output layer (the
  identity); the per-block contexts are 0.  The pointwise ``LogGate`` is the identity only in the limit
  ``alpha -> 0`` (``alpha`` must stay positive), so the gates start at ``IDENTITY_GATE_ALPHA``, with
  ``|f(z) - z| <= alpha z^2 / 2`` per gate, where the random start's gates have ``alpha = 0.05``.

NICE's flows have no identity start: their fixed permutations and orthogonal mixings are not the identity.

Example::

    model = DLGM("planar", 20, flow_start="identity")   # q_K(z | x) = q_0(z | x) before the first update
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nf.flows.planar import identity_parameters as planar_identity
from nf.validation import check_choice

FLOW_STARTS = ("random", "identity")
IDENTITY_START_FLOWS = ("planar", "radial", "conv")
IDENTITY_GATE_ALPHA = 1e-3


def check_flow_start(flow: str, start: str) -> None:
    """``start`` must be one of ``FLOW_STARTS``, and ``identity`` needs a flow that has one (module docstring)."""
    check_choice("flow start", start, FLOW_STARTS)
    if start == "identity" and flow not in IDENTITY_START_FLOWS:
        raise ValueError(f"the {flow!r} flow has no identity start (flows that have one: {IDENTITY_START_FLOWS})")


def identity_parameters(family: str, dim: int, length: int, random_draw: Tensor) -> Tensor:
    """The per-image parameters of ``length`` layers of ``family`` on ``R^dim`` that make every layer the identity
    (module docstring), in the layer-by-layer layout the inference network emits; ``random_draw`` (the head's
    random biases, same size) gives the planar layers their directions ``w``."""
    check_flow_start(family, "identity")
    if family != "planar":
        return torch.zeros_like(random_draw)
    w = random_draw.detach().view(length, 2 * dim + 1)[:, dim : 2 * dim]
    return planar_identity(w / w.norm(dim=-1, keepdim=True)).flatten()


@torch.no_grad()
def start_at_identity(head: nn.Linear, family: str, dim: int, length: int) -> None:
    """Zero the weights of ``head`` (the inference network's flow outputs) and set its biases to the
    ``identity_parameters``, so that the flow is the identity for every image."""
    start = identity_parameters(family, dim, length, head.bias)
    head.weight.zero_()
    head.bias.copy_(start)
