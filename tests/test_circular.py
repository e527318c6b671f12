"""The circular convolution flow: real output, exact inverse, log-det against autograd, odd and even D."""

from __future__ import annotations

import pytest
import torch
from conftest import check_layer

from nf.flows.circular import MIN_MAGNITUDE, CircularConvolution


def random_layer(dim: int, seed: int = 0, scale: float = 1.0) -> CircularConvolution:
    layer = CircularConvolution(dim)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.log_magnitude.copy_(scale * torch.randn(layer.log_magnitude.shape, generator=g))
        layer.phase.copy_(3 * torch.randn(layer.phase.shape, generator=g))
    return layer


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 7, 8, 15, 40])
def test_inverse_and_log_det_against_autograd(dim):
    layer = random_layer(dim, seed=dim)
    z = torch.randn(6, dim, generator=torch.Generator().manual_seed(1))
    y, _ = layer(z)
    assert not y.is_complex() and y.dtype == torch.float64
    check_layer(layer, z, inverse_tol=1e-9)


@pytest.mark.parametrize("dim", [5, 6])
def test_it_is_a_circular_convolution_with_its_kernel(dim):
    layer = random_layer(dim)
    w, z = layer.kernel(), torch.randn(dim)
    expected = torch.stack([sum(w[j] * z[(i - j) % dim] for j in range(dim)) for i in range(dim)])
    torch.testing.assert_close(layer(z.unsqueeze(0))[0][0], expected)


def test_log_det_is_differentiable():
    layer = random_layer(6)
    _, log_det = layer(torch.randn(3, 6))
    log_det.sum().backward()
    assert layer.log_magnitude.grad is not None and layer.log_magnitude.grad.abs().sum() > 0


def test_magnitudes_stay_away_from_zero():
    layer = random_layer(9, scale=50.0)
    assert (layer.spectrum().abs() >= MIN_MAGNITUDE * (1 - 1e-12)).all()
    check_layer(layer, torch.randn(4, 9), inverse_tol=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 5, 8])
def test_amortized_spectrum_per_sample(dim):
    """Per-sample spectra: each row is the global layer with that row's parameters."""
    amortized = CircularConvolution(dim, amortized=True)
    g = torch.Generator().manual_seed(dim)
    params = torch.randn(4, amortized.n_params, generator=g)
    z = torch.randn(4, dim, generator=g)
    check_layer(amortized, z, params, inverse_tol=1e-9)
    y, log_det = amortized(z, params)
    for i in range(4):
        single = CircularConvolution(dim)
        with torch.no_grad():
            single.log_magnitude.copy_(params[i, : dim // 2 + 1])
            single.phase.copy_(params[i, dim // 2 + 1 :])
        y_i, ld_i = single(z[i : i + 1])
        torch.testing.assert_close(y[i], y_i[0])
        torch.testing.assert_close(log_det[i], ld_i[0])


def test_zero_parameters_give_the_identity():
    layer = CircularConvolution(6)
    z = torch.randn(3, 6)
    y, log_det = layer(z)
    torch.testing.assert_close(y, z)
    torch.testing.assert_close(log_det, torch.zeros(3))
