"""Property-based check of the log-determinant identity over random shapes and parameters."""

from __future__ import annotations

import torch
from conftest import check_layer
from hypothesis import given, settings
from hypothesis import strategies as st

from nf.flows import FLOW_FAMILIES, Planar, Radial, make_flow


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["planar", "radial"]),
    dim=st.integers(1, 6),
    batch=st.integers(1, 4),
    param_scale=st.floats(0.05, 4.0),
    input_scale=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_amortized_layers_log_det_identity(kind, dim, batch, param_scale, input_scale, seed):
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(seed)
    layer = Planar(dim, amortized=True) if kind == "planar" else Radial(dim, amortized=True)
    params = param_scale * torch.randn(batch, layer.n_params, generator=g)
    z = input_scale * torch.randn(batch, dim, generator=g)
    check_layer(layer, z, params, inverse_tol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    family=st.sampled_from(FLOW_FAMILIES),
    dim=st.integers(2, 6),
    length=st.integers(1, 4),
    param_scale=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_flows_log_det_identity(family, dim, length, param_scale, seed):
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(seed)
    flow = make_flow(family, dim, length, coupling_hidden=(8,), seed=seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(param_scale * torch.randn(p.shape, generator=g))
    check_layer(flow, torch.randn(3, dim, generator=g), inverse_tol=1e-6)
