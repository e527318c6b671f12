"""Invertibility and log-determinants of every flow layer, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import check_layer
from torch import nn

from nf.flows import (
    FLOW_FAMILIES,
    AdditiveCoupling,
    ConvolutionalCoupling,
    DiagonalScaling,
    FlowSequence,
    LogGate,
    OrthogonalMixing,
    Permutation,
    Planar,
    Radial,
    make_flow,
)
from nf.flows.planar import constrained_u
from nf.flows.radial import constrained_alpha_beta

N = 7


def randomize(module: nn.Module, scale: float = 1.0, seed: int = 0) -> nn.Module:
    """Overwrite every parameter with Gaussian noise (zero-initialised layers would test nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return module


def planar_params(dim: int, wu: float, w_scale: float = 1.0, n: int = N, seed: int = 0) -> torch.Tensor:
    """Per-sample planar parameters ``[u, w, b]`` with raw ``w'u`` fixed to ``wu``."""
    g = torch.Generator().manual_seed(seed)
    w = w_scale * torch.randn(n, dim, generator=g)
    u = torch.randn(n, dim, generator=g)
    u = u - ((w * u).sum(-1, keepdim=True) - wu) * w / (w * w).sum(-1, keepdim=True)
    b = torch.randn(n, 1, generator=g)
    return torch.cat([u, w, b], dim=-1)


GLOBAL_LAYERS = {
    "planar": lambda d: randomize(Planar(d)),
    "planar-large": lambda d: randomize(Planar(d), scale=3.0),
    "radial": lambda d: randomize(Radial(d)),
    "radial-large": lambda d: randomize(Radial(d), scale=3.0),
    "coupling": lambda d: randomize(AdditiveCoupling(d, hidden=(8, 8))),
    "coupling-swap": lambda d: randomize(AdditiveCoupling(d, hidden=(8,), activation=nn.Tanh, swap=True)),
    "permutation": lambda d: Permutation(d, torch.Generator().manual_seed(1)),
    "orthogonal": lambda d: OrthogonalMixing(d, torch.Generator().manual_seed(1)),
    "scaling": lambda d: randomize(DiagonalScaling(d)),
    "conv-coupling": lambda d: randomize(ConvolutionalCoupling(d, hidden=(8, 8)), 0.7),
    "conv-coupling-swap": lambda d: randomize(ConvolutionalCoupling(d, hidden=(8,), swap=True), 0.7),
    "log-gate": lambda d: randomize(LogGate(d)),
    "sequence": lambda d: randomize(
        FlowSequence([Planar(d), Radial(d), AdditiveCoupling(d, (8,)), OrthogonalMixing(d), DiagonalScaling(d)]),
        scale=0.7,
    ),
    **{
        f"make_flow-{family}": (lambda d, f=family: randomize(make_flow(f, d, 3, coupling_hidden=(8,)), 0.5))
        for family in FLOW_FAMILIES
    },
}


@pytest.mark.parametrize("dim", [2, 3, 10])
@pytest.mark.parametrize("name", sorted(GLOBAL_LAYERS))
def test_global_layer_inverse_and_log_det(name, dim):
    layer = GLOBAL_LAYERS[name](dim)
    z = 1.5 * torch.randn(N, dim, generator=torch.Generator().manual_seed(2))
    check_layer(layer, z)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_amortized_planar_per_sample_parameters(dim):
    layer = Planar(dim, amortized=True)
    params = torch.randn(N, layer.n_params, generator=torch.Generator().manual_seed(3)) * 2
    check_layer(layer, torch.randn(N, dim), params)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_amortized_radial_per_sample_parameters(dim):
    layer = Radial(dim, amortized=True)
    params = torch.randn(N, layer.n_params, generator=torch.Generator().manual_seed(3)) * 2
    check_layer(layer, torch.randn(N, dim), params)


AMORTIZED_FLOWS = {
    "planar": lambda d: Planar(d, amortized=True),
    "radial": lambda d: Radial(d, amortized=True),
    "coupling-context": lambda d: randomize(AdditiveCoupling(d, (8,), context=3)),
    "conv-coupling-context": lambda d: randomize(ConvolutionalCoupling(d, (8,), swap=True, context=3), 0.7),
    "scaling": lambda d: DiagonalScaling(d, amortized=True),
    **{
        f"make_flow-{family}": (lambda d, f=family: randomize(make_flow(f, d, 3, True, (8,), context=2), 0.5))
        for family in FLOW_FAMILIES
    },
}


@pytest.mark.parametrize("dim", [2, 3, 10])
@pytest.mark.parametrize("name", sorted(AMORTIZED_FLOWS))
def test_amortized_flow_inverse_and_log_det(name, dim):
    flow = AMORTIZED_FLOWS[name](dim)
    g = torch.Generator().manual_seed(4)
    params = torch.randn(N, flow.n_params, generator=g)
    check_layer(flow, 1.5 * torch.randn(N, dim, generator=g), params, inverse_tol=1e-6)


@pytest.mark.parametrize("name", sorted(AMORTIZED_FLOWS))
def test_amortized_flows_broadcast_over_importance_samples(name):
    flow = AMORTIZED_FLOWS[name](4)
    params = torch.randn(N, flow.n_params)
    z = torch.randn(5, N, 4)  # (samples, batch, dim)
    y, log_det = flow(z, params)
    assert y.shape == (5, N, 4) and log_det.shape == (5, N)
    y2, ld2 = flow(z[2], params)
    torch.testing.assert_close(y[2], y2)
    torch.testing.assert_close(log_det[2], ld2)
    torch.testing.assert_close(flow.inverse(y, params), z, atol=1e-6, rtol=0)


def test_convolutional_coupling_in_two_dimensions_is_an_affine_coupling():
    """With one-dimensional halves the circular convolution is a scaling by W_0 = |W_0| > 0."""
    layer = randomize(ConvolutionalCoupling(2, (8,)))
    z = torch.randn(N, 2)
    y, log_det = layer(z)
    raw_magnitude, _, shift = layer.kernel_and_shift(z[:, :1])
    scale = layer.layout.magnitude(raw_magnitude)
    torch.testing.assert_close(y[:, 1:], scale * z[:, 1:] + shift)
    torch.testing.assert_close(log_det, torch.log(scale).squeeze(-1))


def test_log_gate_is_the_slog_gate_and_near_identity_at_start():
    layer = LogGate(3)
    z = torch.tensor([[-2.0, 0.0, 3.0]])
    alpha = layer.alpha()
    y, _ = layer(z)
    torch.testing.assert_close(y, torch.sign(z) * torch.log(1 + alpha * z.abs()) / alpha)
    assert (y - z).abs().max() < 0.3 and (y.abs() <= z.abs()).all()


def test_amortized_sequence_splits_parameters_in_order():
    dim = 3
    layers = [Planar(dim, True), randomize(AdditiveCoupling(dim, (8,))), Radial(dim, True), Planar(dim, True)]
    flow = FlowSequence(layers)
    assert flow.n_params == 2 * (2 * dim + 1) + dim + 2
    params = torch.randn(N, flow.n_params)
    z = torch.randn(N, dim)
    check_layer(flow, z, params)
    # the sequence equals applying the layers one by one with their own slices
    p1, p3, p4 = params[:, :7], params[:, 7:12], params[:, 12:]
    y = z
    total = torch.zeros(N)
    for layer, p in zip(layers, [p1, None, p3, p4]):
        y, ld = layer(y, p)
        total = total + ld
    out, log_det = flow(z, params)
    torch.testing.assert_close(out, y)
    torch.testing.assert_close(log_det, total)


@pytest.mark.parametrize("raw_wu", [-10.0, -5.0, -1.5, 0.0, 4.0])
@pytest.mark.parametrize("w_scale", [1e-2, 1.0, 5.0])
def test_planar_near_degenerate(raw_wu, w_scale):
    """As raw w'u -> -inf, w'u_hat -> -1 and the Jacobian nearly vanishes at w'z + b = 0."""
    layer = Planar(3, amortized=True)
    params = planar_params(3, raw_wu, w_scale)
    z = torch.randn(N, 3)
    # put half the points on the hyperplane w'z + b = 0 where the map is most contracting
    w, b = params[:, 3:6], params[:, 6:]
    on_plane = z - ((w * z).sum(-1, keepdim=True) + b) * w / (w * w).sum(-1, keepdim=True)
    z = torch.cat([z[:3], on_plane[3:]])
    check_layer(layer, z, params, inverse_tol=1e-6)


@pytest.mark.parametrize("raw_a,raw_b", [(-8.0, -10.0), (-8.0, 5.0), (5.0, -20.0), (3.0, 3.0), (0.0, 30.0)])
def test_radial_near_degenerate(raw_a, raw_b):
    """Tiny or large alpha, beta close to -alpha or large: still exact."""
    dim = 3
    z0 = torch.randn(N, dim)
    params = torch.cat([z0, torch.full((N, 1), raw_a), torch.full((N, 1), raw_b)], dim=-1)
    z = z0 + torch.randn(N, dim) * torch.logspace(-2, 1, N).unsqueeze(-1)
    check_layer(Radial(dim, amortized=True), z, params, inverse_tol=1e-6)


def test_planar_constraint_holds_for_arbitrary_raw_parameters():
    g = torch.Generator().manual_seed(0)
    for scale in [1e-3, 1.0, 10.0, 1e3]:
        u = scale * torch.randn(1000, 6, generator=g)
        w = scale * torch.randn(1000, 6, generator=g)
        u_hat = constrained_u(u, w)
        # exact up to the rounding of the dot product itself
        rounding = 1e-14 * w.norm(dim=-1) * u_hat.norm(dim=-1)
        assert ((w * u_hat).sum(-1) >= -1 - rounding).all()


def test_planar_u_hat_uses_squared_norm():
    """w'u_hat must equal m(w'u) = -1 + softplus(w'u) exactly; with ||w|| instead of ||w||^2 it would not."""
    u = torch.tensor([0.3, -2.0])
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5, so ||w|| and ||w||^2 differ
    wu = (w * u).sum()
    assert torch.isclose((w * constrained_u(u, w)).sum(), F.softplus(wu) - 1.0)


def test_planar_without_constraint_can_fold_the_plane():
    """Sanity check of the condition: with w'u < -1 two points map to one (not invertible)."""
    from nf.flows.planar import planar_forward

    u, w, b = torch.tensor([-3.0, 0.0]), torch.tensor([1.0, 0.0]), torch.zeros(1)
    z = torch.tensor([[-0.5, 0.0], [0.0, 0.0], [0.5, 0.0]])
    y, _ = planar_forward(z, u, w, b)
    # f is not monotone along w: the middle point is not between the outer ones
    assert not (y[0, 0] < y[1, 0] < y[2, 0])


def test_radial_constraint_holds_for_arbitrary_raw_parameters():
    g = torch.Generator().manual_seed(0)
    a = 50 * torch.randn(10_000, generator=g)
    b = 50 * torch.randn(10_000, generator=g)
    alpha, beta = constrained_alpha_beta(a, b)
    assert (alpha >= 0).all() and (beta >= -alpha).all()


def test_diagonal_scaling_log_det_is_signed_sum():
    layer = DiagonalScaling(3)
    with torch.no_grad():
        layer.log_scale.copy_(torch.tensor([-1.0, -2.0, 0.5]))
    _, log_det = layer(torch.randn(4, 3))
    torch.testing.assert_close(log_det, torch.full((4,), -2.5))


def test_volume_preserving_layers_have_zero_log_det():
    for layer in [randomize(AdditiveCoupling(4)), Permutation(4), OrthogonalMixing(4)]:
        _, log_det = layer(torch.randn(5, 4))
        assert (log_det == 0).all()


def test_flow_sequence_trajectory_ends_at_output():
    flow = randomize(make_flow("planar", 2, 4), 0.5)
    z = torch.randn(3, 2)
    path = flow.trajectory(z)
    assert len(path) == 5
    torch.testing.assert_close(path[-1], flow(z)[0])


def test_gradients_flow_to_amortized_parameters():
    layer = Planar(2, amortized=True)
    params = torch.randn(4, layer.n_params, requires_grad=True)
    y, log_det = layer(torch.randn(4, 2), params)
    (y.sum() + log_det.sum()).backward()
    assert params.grad is not None and torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: Planar(3)(torch.randn(2, 4)), "dimension 3"),
        (lambda: Planar(3, amortized=True)(torch.randn(2, 3)), "amortised"),
        (lambda: Planar(3, amortized=True)(torch.randn(2, 3), torch.randn(2, 5)), "7 parameters"),
        (lambda: Planar(3)(torch.randn(2, 3), torch.randn(2, 7)), "global parameters"),
        (lambda: make_flow("plnar", 2, 3), "unknown flow family 'plnar'"),
        (lambda: make_flow("planar", 2, -1), "positive integer, got -1"),
        (lambda: make_flow("planar", 2, 2.5), "positive integer, got 2.5"),
        (lambda: AdditiveCoupling(1), "dim >= 2"),
        (lambda: ConvolutionalCoupling(1), "dim >= 2"),
        (lambda: AdditiveCoupling(4, context=-1), "context size must be >= 0, got -1"),
        (lambda: AdditiveCoupling(4, context=2)(torch.randn(2, 4)), "amortised"),
        (lambda: FlowSequence([Planar(2), Planar(3)]), "same dimension"),
    ],
)
def test_bad_input_gives_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
