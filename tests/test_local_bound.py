"""The locally optimised bound F*(x): exact on a linear-Gaussian model, below the amortised bound on a DLGM."""

from __future__ import annotations

import io
import math

import pytest
import torch

from nf.flows import PlanarChain
from nf.models.dlgm import DLGM
from nf.models.local_bound import (
    RATE_CUT,
    LocalFit,
    fitted_log_weights,
    identity_planar_parameters,
    local_planar_bound,
    locally_optimised_bound,
    optimise_local_bound,
)

FAST = LocalFit(check_samples=200, max_steps=2000)
EXACT = LocalFit(check_samples=200, max_steps=2000, final_samples=4000)  # F* against a known value: a finer estimate
RESIDUAL = 0.01  # nats the optimiser may stop above the optimum: near it the Monte Carlo error itself vanishes


class LinearGaussian:
    """``z ~ N(0, I_D)``, ``x | z ~ N(W z + b, sigma^2 I)``: the posterior is Gaussian with precision
    ``Lambda = I + W'W / sigma^2`` and ``x ~ N(b, W W' + sigma^2 I)``, so ``ln p(x)`` is known exactly."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, sigma: float):
        self.weight, self.bias, self.sigma = weight, bias, sigma
        self.precision = torch.eye(weight.shape[1], dtype=weight.dtype) + weight.T @ weight / sigma**2
        covariance = weight @ weight.T + sigma**2 * torch.eye(weight.shape[0], dtype=weight.dtype)
        self.marginal = torch.distributions.MultivariateNormal(bias, covariance)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        residual = (x - z @ self.weight.T - self.bias) / self.sigma
        log_likelihood = -0.5 * (residual**2).sum(-1) - x.shape[-1] * math.log(self.sigma * math.sqrt(2 * math.pi))
        return log_likelihood - 0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)

    def diagonal_gap(self) -> float:
        """``min KL(q || p(z|x))`` over diagonal Gaussians ``q``: ``(sum_i ln Lambda_ii - ln det Lambda) / 2``."""
        return 0.5 * (torch.diagonal(self.precision).log().sum() - torch.logdet(self.precision)).item()


def linear_gaussian(diagonal_posterior: bool) -> tuple[LinearGaussian, torch.Tensor]:
    """A model on ``R^6`` with 3 latents and four of its draws; orthogonal columns of ``W`` give a diagonal posterior,
    mixed ones a correlated posterior."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    if diagonal_posterior:
        weight = torch.linalg.qr(weight)[0] * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    else:  # columns mixed: a strongly correlated posterior
        weight = weight @ torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    model = LinearGaussian(weight, torch.randn(6, generator=generator, dtype=torch.float64), sigma=0.5)
    torch.manual_seed(1)
    return model, model.marginal.sample((4,))


def poor_start(images: torch.Tensor, latent: int = 3) -> tuple[torch.Tensor, torch.Tensor, None]:
    return (
        torch.full((len(images), latent), 2.0, dtype=images.dtype),
        torch.full((len(images), latent), -1.5, dtype=images.dtype),
        None,
    )


def test_a_diagonal_gaussian_reaches_a_diagonal_posterior():
    model, x = linear_gaussian(diagonal_posterior=True)
    assert torch.allclose(model.precision, torch.diag(torch.diagonal(model.precision)))
    nll = -model.marginal.log_prob(x)
    result = optimise_local_bound(model.log_joint, None, x, poor_start(x), EXACT)
    assert (result.start_bound - nll > 10).all()  # a poor starting point
    assert result.converged.all()
    assert ((result.bound - nll).abs() <= 3 * result.bound_se + RESIDUAL).all()  # F* = -ln p(x)


def test_the_exact_posterior_as_proposal_gives_constant_weights_equal_to_the_likelihood():
    model, x = linear_gaussian(diagonal_posterior=True)
    loc = torch.linalg.solve(model.precision, model.weight.T @ (x - model.bias).T).T / model.sigma**2
    log_scale = -0.5 * torch.diagonal(model.precision).log().expand(4, 3)
    log_w = fitted_log_weights(model.log_joint, None, (loc, log_scale, None), x, 50, torch.Generator().manual_seed(0))
    assert log_w.shape == (50, 4) and log_w.dtype == torch.float64
    torch.testing.assert_close(log_w, model.marginal.log_prob(x).expand(50, 4))
    again = fitted_log_weights(
        model.log_joint, None, (loc + 1, log_scale, None), x, 50, torch.Generator().manual_seed(0)
    )
    assert (again.std(0) > 0.1).all() and (
        again.mean(0) < log_w[0]
    ).all()  # another proposal: weights spread, ELBO below


def test_a_diagonal_gaussian_stops_at_the_best_diagonal_gap():
    model, x = linear_gaussian(diagonal_posterior=False)
    nll, gap = -model.marginal.log_prob(x), model.diagonal_gap()
    result = optimise_local_bound(model.log_joint, None, x, poor_start(x), EXACT)
    assert gap > 10 * result.bound_se.max()  # a gap the estimate resolves
    assert (result.bound >= nll - 3 * result.bound_se).all()
    assert ((result.bound - nll - gap).abs() <= 3 * result.bound_se + RESIDUAL).all()
    posterior_mean = torch.linalg.solve(model.precision, model.weight.T @ (x - model.bias).T).T / model.sigma**2
    loc, log_scale, _ = result.parameters  # the best diagonal Gaussian: the posterior mean, precisions diag(Lambda)
    # (to 0.05: a parameter that far off costs about 0.05^2 / 2 nats, below the bound's Monte Carlo error)
    torch.testing.assert_close(loc, posterior_mean, atol=0.05, rtol=0)
    torch.testing.assert_close(log_scale, -0.5 * torch.diagonal(model.precision).log().expand(4, 3), atol=0.05, rtol=0)


def test_a_planar_flow_fitted_per_image_beats_the_best_diagonal_gaussian():
    model, x = linear_gaussian(diagonal_posterior=False)
    nll, gap = -model.marginal.log_prob(x), model.diagonal_gap()
    flow_start = identity_planar_parameters(4, 3, 8, torch.Generator().manual_seed(0), torch.float64)
    start = (*poor_start(x)[:2], flow_start)
    result = optimise_local_bound(model.log_joint, PlanarChain(3, 8, amortized=True), x, start, FAST)
    assert (result.bound >= nll - 3 * result.bound_se).all()
    assert (result.bound - nll).mean() < gap / 2


def test_identity_planar_parameters_are_the_identity():
    params = identity_planar_parameters(5, 4, 3, torch.Generator().manual_seed(0), torch.float64)
    z = torch.randn(7, 5, 4, dtype=torch.float64)
    zk, log_det = PlanarChain(4, 3, amortized=True)(z, params)
    torch.testing.assert_close(zk, z, atol=1e-14, rtol=0)
    torch.testing.assert_close(log_det, torch.zeros_like(log_det), atol=1e-14, rtol=0)


def small_dlgm(flow: str, length: int) -> tuple[DLGM, torch.Tensor]:
    """A randomly initialised DLGM with 4 latents, in float64, and 3 images."""
    torch.manual_seed(0)
    model = DLGM(flow, length, latent=4, hidden=16, data_dim=50).double()
    return model, torch.bernoulli(torch.rand(3, 50, dtype=torch.float64))


@pytest.mark.parametrize("flow,length", [("none", 0), ("planar", 2), ("nice-perm", 2), ("conv", 2)])
def test_on_a_dlgm_the_local_bound_lies_between_the_amortised_bound_and_minus_log_likelihood(flow, length):
    model, x = small_dlgm(flow, length)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = locally_optimised_bound(model, x, FAST)
    torch.manual_seed(2)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 4000)
    amortised, amortised_se = -log_w.mean(0), log_w.std(0) / math.sqrt(4000)
    nll = -model.importance_log_likelihood(x, 4000)
    local_log_w = fitted_log_weights(
        model.log_joint, result.flow, result.parameters, x, 4000, torch.Generator().manual_seed(3)
    )
    local_nll = -torch.logsumexp(local_log_w, 0) + math.log(4000)
    error = torch.hypot(result.start_bound_se, amortised_se)
    assert ((result.start_bound - amortised).abs() <= 3 * error).all()  # it starts from the encoder's posterior
    assert (result.bound <= result.start_bound + 2 * result.gain_se).all()
    assert (result.start_bound - result.bound).mean() > 10 * result.gain_se.max()  # a real amortisation gap
    assert (result.bound >= torch.minimum(nll, local_nll) - 3 * result.bound_se).all()
    for name, value in model.state_dict().items():  # the model is fixed, and left as it was
        assert torch.equal(value, before[name])
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_more_steps_do_not_lower_a_converged_bound_beyond_its_error():
    model, x = small_dlgm("planar", 2)
    result = locally_optimised_bound(model, x, FAST)
    assert result.converged.all()
    final_rate = FAST.learning_rate / RATE_CUT**FAST.rate_cuts
    for rate in (FAST.learning_rate, final_rate):
        more = LocalFit(learning_rate=rate, check_samples=200, check_every=1000, max_steps=1000, rate_cuts=0)
        longer = optimise_local_bound(model.log_joint, model.flow, x, result.parameters, more)
        torch.testing.assert_close(longer.start_bound, result.bound)  # the same final draws: a paired comparison
        assert (result.bound - longer.bound <= result.bound_se).all()


def test_images_are_optimised_independently():
    model, x = small_dlgm("planar", 2)
    pairs = [locally_optimised_bound(model, x[[0, i]], FAST) for i in (1, 2)]
    for field in ("bound", "bound_se", "start_bound", "gain_se", "steps", "converged"):
        first, second = (getattr(r, field)[0] for r in pairs)
        torch.testing.assert_close(first, second, atol=1e-10, rtol=0)
    assert pairs[0].bound[1] != pairs[1].bound[1]  # different second images
    alone = locally_optimised_bound(model, x[:1], FAST)  # other draws: the same bound within Monte Carlo error
    assert (alone.bound[0] - pairs[0].bound[0]).abs() <= 3 * math.hypot(alone.bound_se[0], pairs[0].bound_se[0])


def test_a_local_planar_flow_starts_at_the_encoders_gaussian_and_improves_on_it():
    model, x = small_dlgm("none", 0)
    diagonal = locally_optimised_bound(model, x, FAST)
    planar = local_planar_bound(model, x, 4, FAST)
    torch.testing.assert_close(planar.start_bound, diagonal.start_bound, atol=1e-10, rtol=0)
    assert (planar.bound <= planar.start_bound + 2 * planar.gain_se).all()
    assert planar.bound.mean() <= diagonal.bound.mean() + 3 * diagonal.bound_se.max()
    assert planar.parameters[2].shape == (3, 4 * (2 * 4 + 1))


def test_an_image_that_runs_out_of_steps_is_not_converged():
    model, x = linear_gaussian(diagonal_posterior=False)
    result = optimise_local_bound(model.log_joint, None, x, poor_start(x), LocalFit(check_every=5, max_steps=12))
    assert not result.converged.any()
    assert (result.steps == 12).all()


def test_bad_settings_and_inputs_are_named():
    for key, value, message in (
        ("max_steps", -3, "max_steps must be a positive integer, got -3"),
        ("check_every", 0, "check_every must be a positive integer, got 0"),
        ("learning_rate", 0.0, "learning_rate must be a positive number, got 0.0"),
        ("rate_cuts", -1, "rate_cuts must be a non-negative integer, got -1"),
    ):
        with pytest.raises(ValueError, match=message):
            LocalFit(**{key: value})
    model, x = small_dlgm("planar", 2)
    with pytest.raises(ValueError, match="planar flow length must be a positive integer, got 0"):
        local_planar_bound(model, x, 0)
    with pytest.raises(ValueError, match=r"start's flow parameters must be \(3, 18\), got None"):
        optimise_local_bound(model.log_joint, model.flow, x, poor_start(x, 4))


def _through_a_file(state: dict) -> dict:
    """The state as a resumed process reads it: saved and loaded (tensors only)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("stop", [1, 37, 40, "first cut", "end"])  # the first step, mid-chunk, a chunk's end, ...
def test_a_fit_resumed_from_any_step_ends_with_the_numbers_of_one_never_stopped(stop):
    model, x = small_dlgm("planar", 2)
    fit = LocalFit(check_samples=200, check_every=20, max_steps=400)
    states: list[dict] = []
    whole = locally_optimised_bound(model, x, fit, at_step=lambda state: states.append(state()))  # kept, not saved
    assert whole.converged.any() and whole.steps.max() < 400  # some images stop before others
    assert [s["step"] for s in states] == list(range(1, int(whole.steps.max()) + 1))
    cut = next(s for s in states if s["cuts"].any())  # the step a rate was first cut at
    state = {"end": states[-1], "first cut": cut}.get(stop) or _through_a_file(states[stop - 1])
    resumed = locally_optimised_bound(model, x, fit, resume=state)
    for field in ("bound", "bound_se", "start_bound", "gain_se", "steps", "converged"):
        assert torch.equal(getattr(resumed, field), getattr(whole, field)), field
    for mine, theirs in zip(resumed.parameters, whole.parameters):
        assert torch.equal(mine, theirs)


def test_a_state_of_another_fit_is_refused_in_one_line():
    model, x = small_dlgm("planar", 2)
    fit = LocalFit(check_samples=50, check_every=5, max_steps=5)
    states: list[dict] = []
    local_planar_bound(model, x, 3, fit, at_step=lambda state: states.append(state()))
    with pytest.raises(ValueError, match=r"the state to resume from has tensors of shapes .*: it is another fit's$"):
        locally_optimised_bound(model, x, fit, resume=states[-1])
