"""Flow layers: every layer maps ``z -> (f(z), log|det df/dz|)``."""

from .base import FlowLayer, FlowSequence
from .circular import CircularConvolution
from .conv_coupling import ConvolutionalCoupling, LogGate
from .coupling_chain import CouplingChain
from .factory import FLOW_FAMILIES, make_flow, parameter_count_table
from .fused import PlanarChain
from .nice import AdditiveCoupling, DiagonalScaling, OrthogonalMixing, Permutation
from .planar import Planar
from .radial import Radial

__all__ = [
    "FLOW_FAMILIES",
    "AdditiveCoupling",
    "CircularConvolution",
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
    "make_flow",
    "parameter_count_table",
]
