"""Exact densities, log normalising constants and the windowed targets."""

from __future__ import annotations

import pytest
import torch

from nf.flows import FlowLayer, make_flow
from nf.models.density import flow_log_density
from nf.models.distributions import DiagonalGaussian
from nf.models.energies import WINDOW_HALF_WIDTH, paper_energy, target_energy
from nf.models.quadrature import log_normalizer, midpoint_grid


def random_flow(family: str, length: int, seed: int = 0):
    flow = make_flow(family, 2, length, coupling_hidden=(16,), seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.8 * torch.randn(p.shape, generator=g))
    return flow


@pytest.mark.parametrize("family", ["planar", "radial", "nice-orth", "nice-perm+scale"])
def test_inverse_then_forward_recovers_a_grid(family):
    flow = random_flow(family, 8)
    points, _ = midpoint_grid(4.0, 60)
    with torch.no_grad():
        recovered, _ = flow(flow.inverse(points))
    torch.testing.assert_close(recovered, points, atol=1e-9, rtol=0)


@pytest.mark.parametrize("family", ["planar", "radial", "nice-orth+scale"])
def test_exact_density_integrates_to_one(family):
    flow = random_flow(family, 4, seed=1)
    points, area = midpoint_grid(14.0, 1400)
    with torch.no_grad():
        mass = flow_log_density(flow, DiagonalGaussian.standard(2), points).exp().sum() * area
    assert mass.item() == pytest.approx(1.0, abs=2e-4)  # a wrong log-det would be off by a factor


@pytest.mark.parametrize("name", ["U1", "U2", "U3", "U4"])
def test_log_normalizer_is_converged(name):
    energy = target_energy(name)
    reference = log_normalizer(energy, 7.0, 1200)
    assert abs(log_normalizer(energy, 7.0, 1800) - reference) < 1e-4  # finer grid
    assert abs(log_normalizer(energy, 9.0, 1600) - reference) < 1e-4  # wider grid


def test_log_normalizer_of_a_gaussian():
    energy = lambda z: 0.5 * (z**2).sum(-1)  # noqa: E731 - Z = 2 pi
    assert log_normalizer(energy, 8.0, 400) == pytest.approx(torch.log(torch.tensor(2 * torch.pi)).item(), abs=1e-10)


@pytest.mark.parametrize("name", ["U2", "U3", "U4"])
def test_published_u2_to_u4_are_not_normalisable(name):
    """ln Z over [-L, L]^2 keeps growing by about ln 2 per doubling of L."""
    energy = paper_energy(name)
    growth = log_normalizer(energy, 32.0, 3200) - log_normalizer(energy, 16.0, 1600)
    assert growth == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=0.02)


def test_u1_is_normalisable_and_unchanged():
    z = 3 * torch.randn(100, 2)
    torch.testing.assert_close(target_energy("U1")(z), paper_energy("U1")(z))
    assert abs(log_normalizer(paper_energy("U1"), 16.0, 1600) - log_normalizer(paper_energy("U1"), 8.0, 800)) < 1e-6


@pytest.mark.parametrize("name", ["U2", "U3", "U4"])
def test_windowed_target_equals_the_paper_inside_the_window(name):
    z = torch.empty(1000, 2).uniform_(-WINDOW_HALF_WIDTH, WINDOW_HALF_WIDTH)
    torch.testing.assert_close(target_energy(name)(z), paper_energy(name)(z))
    outside = torch.tensor([[5.0, 0.0], [-6.0, 1.0]])
    assert (target_energy(name)(outside) > paper_energy(name)(outside) + 10).all()


def test_overflowing_inverse_gives_zero_density_not_nan():
    """Far out, the inverse of a compressing LogGate overflows float32: the density is 0 there, never NaN."""
    from nf.flows import LogGate

    gate = LogGate(2).float()
    with torch.no_grad():
        gate.raw_alpha.fill_(1.0)  # alpha = softplus(1) ~ 1.31: exp(1.31 * 100) overflows float32
    y = torch.tensor([[0.5, -0.3], [100.0, 0.0]], dtype=torch.float32)
    log_q = flow_log_density(gate, DiagonalGaussian.standard(2, dtype=torch.float32), y)
    assert torch.isfinite(log_q[0]) and log_q[1] == -torch.inf


class _HugeScaling(FlowLayer):
    """``y = z / c`` with a log-determinant that overflows (``inf - inf``) for huge ``z``: a stand-in for a
    convolutional flow far outside its training window."""

    def __init__(self):
        super().__init__()
        self.dim, self.n_params, self.amortized = 1, 0, False

    def forward(self, z, params=None):
        log_det = torch.exp(z.abs().sum(-1)) - torch.exp(z.abs().sum(-1))  # nan where exp overflows
        return z / 1e200, log_det

    def inverse(self, y, params=None):
        return y * 1e200


def test_finite_but_huge_preimage_gives_zero_density_not_nan():
    y = torch.tensor([[0.0], [1e-40]], dtype=torch.float64)  # z_0 = 1e160: z_0^2 overflows
    log_q = flow_log_density(_HugeScaling(), DiagonalGaussian.standard(1, dtype=torch.float64), y)
    assert torch.isfinite(log_q[0]) and log_q[1] == -torch.inf
