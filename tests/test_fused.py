"""The fused planar and radial chains give the same values and gradients as the layer-by-layer flows (float64,
1e-10)."""

from __future__ import annotations

import pytest
import torch
from conftest import check_layer

from nf.flows import FlowSequence, Planar, PlanarChain, Radial, RadialChain

# family: (layer, fused chain, the layer's parameter names in order)
FAMILIES = {"planar": (Planar, PlanarChain, ("u", "w", "b")), "radial": (Radial, RadialChain, ("z0", "a", "b"))}


def pair(dim, length, amortized, family="planar", seed=0):
    layer_type, chain_type, names = FAMILIES[family]
    plain = FlowSequence(layer_type(dim, amortized) for _ in range(length))
    fused = chain_type(dim, length, amortized)
    if not amortized:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for k, layer in enumerate(plain.layers):
                for name in names:
                    value = getattr(layer, name)
                    value.copy_(torch.randn(value.shape, generator=g) / dim**0.5)
                    getattr(fused, name)[k] = value if value.shape != (1,) else value[0]
    return plain, fused


def gradients(flow, z, params, grad_z, grad_log_det):
    """Gradients wrt z and the parameters, the latter stacked over layers (compared in the fused layout's shape)."""
    z = z.clone().requires_grad_()
    inputs = [z] + ([params] if params is not None else list(flow.parameters()))
    out, log_det = flow(z, params)
    grads = torch.autograd.grad((out * grad_z).sum() + (log_det * grad_log_det).sum(), inputs)
    if params is None and isinstance(flow, FlowSequence):
        per_layer = grads[1:]
        grads = (grads[0], *(torch.stack(per_layer[j::3]) for j in range(3)))  # (K, D) or (K, 1)
    return grads


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("amortized", [True, False])
@pytest.mark.parametrize("dim,length", [(1, 1), (2, 5), (7, 12), (40, 80)])
def test_same_values_and_gradients_as_layer_by_layer(dim, length, amortized, family):
    g = torch.Generator().manual_seed(dim + length)
    batch = 6
    plain, fused = pair(dim, length, amortized, family)
    params = torch.randn(batch, plain.n_params, generator=g, requires_grad=True) if amortized else None
    z = torch.randn(batch, dim, generator=g)
    y_plain, ld_plain = plain(z, params)
    y_fused, ld_fused = fused(z, params)
    torch.testing.assert_close(y_fused, y_plain, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_fused, ld_plain, atol=1e-10, rtol=0)
    grad_z, grad_ld = torch.randn(batch, dim, generator=g), torch.randn(batch, generator=g)
    for a, b in zip(gradients(fused, z, params, grad_z, grad_ld), gradients(plain, z, params, grad_z, grad_ld)):
        torch.testing.assert_close(a, b.reshape(a.shape), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_broadcasts_over_importance_samples(family):
    g = torch.Generator().manual_seed(1)
    plain, fused = pair(5, 6, True, family)
    params = torch.randn(4, plain.n_params, generator=g, requires_grad=True)
    z = torch.randn(3, 4, 5, generator=g)  # (samples, batch, dim)
    grad_z, grad_ld = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, generator=g)
    for a, b in zip(gradients(fused, z, params, grad_z, grad_ld), gradients(plain, z, params, grad_z, grad_ld)):
        torch.testing.assert_close(a, b.reshape(a.shape), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gradcheck(family):
    g = torch.Generator().manual_seed(2)
    fused = FAMILIES[family][1](3, 4, amortized=True)
    params = torch.randn(2, fused.n_params, generator=g, requires_grad=True)
    z = torch.randn(2, 3, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, p: fused(z, p), (z, params))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("amortized", [True, False])
def test_inverse_and_log_det_against_autograd(amortized, family):
    _, fused = pair(3, 5, amortized, family)
    params = torch.randn(7, fused.n_params) if amortized else None
    check_layer(fused, torch.randn(7, 3), params, inverse_tol=1e-7)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_no_memory_kept_without_gradients(family):
    fused = FAMILIES[family][1](4, 10, amortized=True)
    with torch.no_grad():
        y, log_det = fused(torch.randn(5, 4), torch.randn(5, fused.n_params))
    assert y.grad_fn is None and log_det.shape == (5,)
