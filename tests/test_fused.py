"""The fused planar chain gives the same values and gradients as the layer-by-layer flow (float64, 1e-10)."""

from __future__ import annotations

import pytest
import torch
from conftest import check_layer

from nf.flows import FlowSequence, Planar, PlanarChain


def pair(dim, length, amortized, seed=0):
    plain = FlowSequence(Planar(dim, amortized) for _ in range(length))
    fused = PlanarChain(dim, length, amortized)
    if not amortized:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for k, layer in enumerate(plain.layers):
                for name in ("u", "w", "b"):
                    getattr(layer, name).copy_(torch.randn(getattr(layer, name).shape, generator=g) / dim**0.5)
                fused.u[k], fused.w[k], fused.b[k] = layer.u, layer.w, layer.b[0]
    return plain, fused


def gradients(flow, z, params, grad_z, grad_log_det):
    """Gradients wrt z and the parameters, the latter in the fused layout (u, w of (K, D), b of (K,))."""
    z = z.clone().requires_grad_()
    inputs = [z] + ([params] if params is not None else list(flow.parameters()))
    out, log_det = flow(z, params)
    grads = torch.autograd.grad((out * grad_z).sum() + (log_det * grad_log_det).sum(), inputs)
    if params is None and isinstance(flow, FlowSequence):
        per_layer = grads[1:]
        grads = (grads[0], torch.stack(per_layer[0::3]), torch.stack(per_layer[1::3]), torch.cat(per_layer[2::3]))
    return grads


@pytest.mark.parametrize("amortized", [True, False])
@pytest.mark.parametrize("dim,length", [(1, 1), (2, 5), (7, 12), (40, 80)])
def test_same_values_and_gradients_as_layer_by_layer(dim, length, amortized):
    g = torch.Generator().manual_seed(dim + length)
    batch = 6
    plain, fused = pair(dim, length, amortized)
    params = torch.randn(batch, plain.n_params, generator=g, requires_grad=True) if amortized else None
    z = torch.randn(batch, dim, generator=g)
    y_plain, ld_plain = plain(z, params)
    y_fused, ld_fused = fused(z, params)
    torch.testing.assert_close(y_fused, y_plain, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_fused, ld_plain, atol=1e-10, rtol=0)
    grad_z, grad_ld = torch.randn(batch, dim, generator=g), torch.randn(batch, generator=g)
    for a, b in zip(gradients(fused, z, params, grad_z, grad_ld), gradients(plain, z, params, grad_z, grad_ld)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_broadcasts_over_importance_samples():
    g = torch.Generator().manual_seed(1)
    plain, fused = pair(5, 6, True)
    params = torch.randn(4, plain.n_params, generator=g, requires_grad=True)
    z = torch.randn(3, 4, 5, generator=g)  # (samples, batch, dim)
    grad_z, grad_ld = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, generator=g)
    for a, b in zip(gradients(fused, z, params, grad_z, grad_ld), gradients(plain, z, params, grad_z, grad_ld)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_gradcheck():
    g = torch.Generator().manual_seed(2)
    fused = PlanarChain(3, 4, amortized=True)
    params = torch.randn(2, fused.n_params, generator=g, requires_grad=True)
    z = torch.randn(2, 3, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, p: fused(z, p), (z, params))


@pytest.mark.parametrize("amortized", [True, False])
def test_inverse_and_log_det_against_autograd(amortized):
    _, fused = pair(3, 5, amortized)
    params = torch.randn(7, fused.n_params) if amortized else None
    check_layer(fused, torch.randn(7, 3), params, inverse_tol=1e-7)


def test_no_memory_kept_without_gradients():
    fused = PlanarChain(4, 10, amortized=True)
    with torch.no_grad():
        y, log_det = fused(torch.randn(5, 4), torch.randn(5, fused.n_params))
    assert y.grad_fn is None and log_det.shape == (5,)
