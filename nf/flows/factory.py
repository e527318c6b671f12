"""Build a flow of a given family and length by name.

Families (paper section 6):

* ``planar``, ``radial``: ``K`` layers of eq. 10 / eq. 13;
* ``nice-perm``, ``nice-orth``: ``K`` additive couplings with a fixed random
  permutation / orthogonal mixing before each coupling after the first;
  append ``+scale`` (e.g. ``nice-orth+scale``) for a final diagonal scaling;
* ``conv`` (extension, Karami et al. 2019): ``K`` blocks of a circular
  convolution, a data-adaptive convolutional coupling and a pointwise
  ``LogGate``.

Amortised flows (the MNIST posteriors) take every per-data-point number from
the inference network: planar and radial parameters, the spectra of circular
convolutions and NICE's scaling; coupling networks receive a ``context``
vector of their own (``context`` numbers per coupling layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nf.flows.base import FlowLayer, FlowSequence
from nf.flows.circular import CircularConvolution
from nf.flows.conv_coupling import INITIAL_ALPHA, ConvolutionalCoupling, LogGate
from nf.flows.nice import AdditiveCoupling, DiagonalScaling, OrthogonalMixing, Permutation
from nf.flows.planar import Planar
from nf.flows.radial import Radial
from nf.validation import check_choice, check_int

FLOW_FAMILIES = ("planar", "radial", "nice-perm", "nice-orth", "nice-perm+scale", "nice-orth+scale", "conv")


def make_flow(
    family: str,
    dim: int,
    length: int,
    amortized: bool = False,
    coupling_hidden: Sequence[int] = (64, 64),
    seed: int = 0,
    context: int = 16,
    gate_alpha: float = INITIAL_ALPHA,
) -> FlowSequence:
    """Return a ``FlowSequence`` of ``length`` steps of ``family`` acting on ``R^dim``.

    ``amortized``: the flow takes per-sample ``params`` from an inference
    network (module docstring); coupling networks then get ``context``
    numbers each.  ``seed`` fixes NICE's random permutations / orthogonal
    matrices; ``gate_alpha`` is the convolutional flow's initial ``LogGate`` ``alpha``.
    """
    check_choice("flow family", family, FLOW_FAMILIES)
    check_int("flow length", length)
    check_int("dimension", dim)
    if family == "planar":
        return FlowSequence(Planar(dim, amortized) for _ in range(length))
    if family == "radial":
        return FlowSequence(Radial(dim, amortized) for _ in range(length))
    coupling_context = context if amortized else 0
    layers: list[FlowLayer] = []
    if family == "conv":
        for k in range(length):
            layers += [
                CircularConvolution(dim, amortized),
                ConvolutionalCoupling(dim, coupling_hidden, swap=k % 2 == 1, context=coupling_context),
                LogGate(dim, gate_alpha),
            ]
        return FlowSequence(layers)
    mixing_name, _, scale = family.partition("+")
    mixing = Permutation if mixing_name == "nice-perm" else OrthogonalMixing
    generator = torch.Generator().manual_seed(seed)
    for k in range(length):
        if k > 0:
            layers.append(mixing(dim, generator))
        layers.append(AdditiveCoupling(dim, coupling_hidden, swap=k % 2 == 1, context=coupling_context))
    if scale:
        layers.append(DiagonalScaling(dim, amortized))
    return FlowSequence(layers)
