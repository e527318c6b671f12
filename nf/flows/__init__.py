"""Flow layers: every layer maps ``z -> (f(z), log|det df/dz|)``."""

from nf.flows.base import FlowLayer, FlowSequence
from nf.flows.circular import CircularConvolution
from nf.flows.conv_chain import ConvChain
from nf.flows.conv_coupling import ConvolutionalCoupling, LogGate
from nf.flows.coupling_chain import CouplingChain
from nf.flows.factory import FLOW_FAMILIES, make_flow
from nf.flows.nice import AdditiveCoupling, DiagonalScaling, OrthogonalMixing, Permutation
from nf.flows.planar import Planar
from nf.flows.planar_chain import PlanarChain
from nf.flows.radial import Radial
from nf.flows.radial_chain import RadialChain

__all__ = [
    "FLOW_FAMILIES",
    "AdditiveCoupling",
    "CircularConvolution",
    "ConvChain",
    "ConvolutionalCoupling",
    "CouplingChain",
    "DiagonalScaling",
    "FlowLayer",
    "FlowSequence",
    "LogGate",
    "OrthogonalMixing",
    "Permutation",
    "Planar",
    "PlanarChain",
    "Radial",
    "RadialChain",
    "make_flow",
]
