"""The identity start of amortised flows: every layer the identity at the first update, and not a dead point."""

from __future__ import annotations

import pytest
import torch

from nf.experiments.mnist import mnist_config
from nf.flows.conv_coupling import LogGate
from nf.flows.planar import IDENTITY_WU, constrained_u
from nf.models.dlgm import DLGM
from nf.models.flow_start import IDENTITY_GATE_ALPHA, IDENTITY_START_FLOWS, identity_parameters

LENGTHS = {"planar": 5, "radial": 5, "conv": 3}


def _model(flow: str, fused: bool, start: str = "identity", seed: int = 0) -> DLGM:
    torch.manual_seed(seed)
    return DLGM(flow, LENGTHS[flow], latent=6, hidden=16, data_dim=30, fused=fused, flow_start=start).double()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("flow", IDENTITY_START_FLOWS)
def test_the_identity_start_maps_every_posterior_sample_to_itself(flow, fused):
    model = _model(flow, fused)
    x = torch.bernoulli(torch.rand(7, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    torch.manual_seed(2)
    z0, zk, log_q = model.sample_posterior(x, samples=4)
    q0, params = model.posterior(x)
    _, log_det = model.flow(z0, params)
    if flow == "conv":  # the gates are the identity only as alpha -> 0: |f(z) - z| <= alpha z^2 / 2 per gate
        bound = LENGTHS[flow] * IDENTITY_GATE_ALPHA * z0.abs().max() ** 2 / 2
        assert (zk - z0).abs().max() <= bound
        assert log_det.abs().max() <= LENGTHS[flow] * z0.shape[-1] * IDENTITY_GATE_ALPHA * z0.abs().max()
    else:
        torch.testing.assert_close(zk, z0, atol=1e-12, rtol=0)
        torch.testing.assert_close(log_det, torch.zeros_like(log_det), atol=1e-12, rtol=0)
        torch.testing.assert_close(log_q, q0.log_prob(z0), atol=1e-12, rtol=0)


@pytest.mark.parametrize("flow", IDENTITY_START_FLOWS)
def test_the_identity_start_learns_its_flow_and_draws_no_extra_random_numbers(flow):
    model, random_start = _model(flow, True), _model(flow, True, start="random")
    for (name, p), q in zip(model.named_parameters(), random_start.parameters(), strict=True):
        if not name.startswith(("flow_head.", "flow.")):  # encoder, q_0's head and decoder: the same draws
            torch.testing.assert_close(p, q, atol=0, rtol=0)
    assert model.flow_head.weight.abs().max() == 0
    x = torch.bernoulli(torch.rand(7, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    model.free_energy(x).mean().backward()
    assert model.flow_head.bias.grad.abs().max() > 0  # not a dead point: the flow moves off the identity
    assert model.flow_head.weight.grad.abs().max() > 0


def test_planar_identity_needs_u_along_w_not_u_zero():
    w = torch.randn(3, 4, dtype=torch.float64)
    unit = w / w.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(constrained_u(IDENTITY_WU * unit, unit), torch.zeros_like(w), atol=1e-15, rtol=0)
    assert constrained_u(torch.zeros_like(w), w).abs().min(-1).values.max() > 0  # u = 0: u_hat = m(0) w / ||w||^2
    start = identity_parameters("planar", 4, 3, torch.randn(27, dtype=torch.float64)).view(3, 9)
    torch.testing.assert_close(start[:, 4:8].norm(dim=-1), torch.ones(3, dtype=torch.float64))
    assert start[:, 8].abs().max() == 0


def test_flows_without_an_identity_start_are_refused_in_one_line():
    with pytest.raises(ValueError, match="'nice-perm' flow has no identity start"):
        DLGM("nice-perm", 2, flow_start="identity")
    with pytest.raises(ValueError, match="'nice-orth\\+scale' flow has no identity start"):
        mnist_config(flow="nice-orth+scale", length=2, flow_start="identity")
    with pytest.raises(ValueError, match="flow start"):
        mnist_config(flow_start="zero")
    with pytest.raises(ValueError, match="LogGate alpha must be a positive number, got 0"):
        LogGate(3, 0)


def test_the_start_enters_a_config_only_when_it_is_the_identity():
    assert "flow_start" not in mnist_config(flow="planar", length=20)  # the cached runs' keys are unchanged
    assert mnist_config(flow="conv", length=5, flow_start="identity")["flow_start"] == "identity"
    assert "flow_start" not in mnist_config(flow="none", length=0, flow_start="identity")  # no flow: one run
