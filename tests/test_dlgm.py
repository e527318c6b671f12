"""The DLGM: shapes, fused vs layer-by-layer flows, the importance-sampled likelihood."""

from __future__ import annotations

import copy

import pytest
import torch

from nf.models.dlgm import DLGM, Maxout, fused_chain


def test_maxout_takes_the_max_of_each_pool():
    layer = Maxout(3, 2, pool=4)
    x = torch.randn(5, 3)
    expected = layer.linear(x).view(5, 2, 4).max(-1).values
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("flow", ["planar", "radial", "nice-perm", "nice-orth+scale", "conv"])
def test_fused_and_plain_models_give_identical_objectives_and_gradients(flow):
    x = torch.bernoulli(torch.rand(8, 784, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(1)
    plain = DLGM(flow, 6, fused=False)
    with torch.no_grad():  # away from the identity initialisation, so that every flow weight gets a gradient
        for p in plain.flow.parameters():
            p.normal_(std=0.5 / p.shape[-1] ** 0.5)
    fused = copy.deepcopy(plain)
    if flow in ("planar", "radial"):  # amortised planar and radial layers own no weights
        fused.flow = DLGM(flow, 6, fused=True).flow
    else:
        fused.flow = fused_chain(flow, plain.latent)(plain.flow)
    losses = []
    for model in (fused, plain):
        torch.manual_seed(2)
        loss = model.free_energy(x, beta=0.3).mean()
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-10, rtol=0)
    outside = [{name: p for name, p in m.named_parameters() if not name.startswith("flow.")} for m in (fused, plain)]
    assert outside[0].keys() == outside[1].keys()
    for name, p in outside[0].items():
        torch.testing.assert_close(p.grad, outside[1][name].grad, atol=1e-10, rtol=1e-9)
    if flow not in ("planar", "radial"):  # the fused flow's stacked weights, as the chain stacks the layers' ones
        gradients = copy.deepcopy(plain.flow)
        with torch.no_grad():
            for p, q in zip(gradients.parameters(), plain.flow.parameters()):
                assert q.grad.abs().sum() > 0
                p.copy_(q.grad)
        for a, b in zip(fused.flow.parameters(), type(fused.flow)(gradients).parameters(), strict=True):
            torch.testing.assert_close(a.grad, b, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize(
    "flow,length", [("none", 0), ("planar", 3), ("radial", 3), ("nice-perm+scale", 3), ("conv", 2)]
)
def test_importance_sampled_likelihood_beats_the_bound_on_average(flow, length):
    torch.manual_seed(0)
    model = DLGM(flow, length, latent=4, hidden=16)
    x = torch.bernoulli(torch.rand(6, 784))
    with torch.no_grad():
        bound = torch.stack([model.free_energy(x) for _ in range(200)]).mean(0)  # -ELBO
    log_px = model.importance_log_likelihood(x, samples=200)
    assert log_px.shape == (6,)
    assert (-log_px <= bound + 0.5).all()  # -ln p(x) <= F(x), up to Monte-Carlo error


def test_decoder_is_fed_z_k_not_z_0():
    torch.manual_seed(0)
    model = DLGM("planar", 2, latent=3, hidden=8)
    x = torch.bernoulli(torch.rand(2, 784))
    seen = []
    model.decoder.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    torch.manual_seed(5)
    model.free_energy(x)
    torch.manual_seed(5)
    z0, zk, _ = model.sample_posterior(x)
    torch.testing.assert_close(seen[0], zk)
    assert not torch.allclose(zk, z0)


def test_bad_flow_arguments():
    with pytest.raises(ValueError, match="unknown DLGM flow 'nice'.*nice-perm"):
        DLGM("nice", 2)
    with pytest.raises(ValueError, match="non-negative integer, got -3"):
        DLGM("planar", -3)


@pytest.mark.parametrize("flow", ["nice-perm", "nice-orth+scale", "conv"])
def test_coupling_flows_are_conditioned_on_the_image(flow):
    """The same z_0 goes through a different map for two different images (the context changes the coupling)."""
    torch.manual_seed(0)
    model = DLGM(flow, 2, latent=6, hidden=16)
    for p in model.flow.parameters():  # move the zero-initialised coupling outputs away from the identity
        torch.nn.init.normal_(p, std=0.5)
    x = torch.bernoulli(torch.rand(2, 784))
    _, params = model.posterior(x)
    z0 = torch.randn(1, 6).expand(2, 6)
    zk, _ = model.flow(z0, params)
    assert not torch.allclose(zk[0], zk[1])
    assert model.flow.n_params > 0


def test_flows_without_a_fused_form_at_that_size_stay_layer_by_layer():
    from nf.flows import ConvChain, CouplingChain, FlowSequence, RadialChain

    for family, chain in (("conv", ConvChain), ("nice-perm", CouplingChain), ("nice-orth+scale", CouplingChain)):
        assert isinstance(DLGM(family, 2, latent=6, hidden=16).flow, chain)
        odd = DLGM(family, 2, latent=5, hidden=16).flow  # equal coupling halves need an even latent size
        assert type(odd) is FlowSequence
    assert isinstance(DLGM("radial", 2, latent=5, hidden=16).flow, RadialChain)  # any size
    assert type(DLGM("radial", 2, latent=5, hidden=16, fused=False).flow) is FlowSequence
