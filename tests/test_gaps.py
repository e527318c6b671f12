"""Where the gap goes (nf.experiments.gaps): the decomposition adds up, F* stays above -ln p(x), the entry is cached."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from test_local_bound import linear_gaussian

from nf.experiments.gaps import analyse, fit_gaps, fitted_nll, gap_config, lowest_nll, nll_estimates, summarize_gaps
from nf.experiments.mnist import fit_mnist, mnist_config
from nf.experiments.trained import parameters_entry
from nf.models.dlgm import DLGM

FIT = dict(learning_rate=3e-2, samples=8, check_every=25, check_samples=200, max_steps=600, final_samples=400)


def _config(**overrides) -> dict:
    run = mnist_config(flow="planar", length=2, protocol="test")
    return gap_config(run, images=6, nll_samples=2000, fit=FIT, **overrides)


@pytest.mark.parametrize("flow,length", [("none", 0), ("planar", 2)])
def test_the_gaps_add_up_and_the_local_bound_stays_above_the_likelihood(flow, length):
    torch.manual_seed(0)
    model = DLGM(flow, length, latent=3, hidden=12, data_dim=20)
    images = torch.bernoulli(torch.rand(6, 20, generator=torch.Generator().manual_seed(1)))
    scores = analyse(model, images, _config(local_planar=4))
    summary = summarize_gaps(scores)
    total = summary["approximation_gap"] + summary["amortisation_gap"]
    assert summary["inference_gap"] == pytest.approx(total, abs=1e-9)
    assert summary["amortisation_gap"] > 0  # an untrained encoder is far from each image's best parameters
    assert summary["below_nll"] == 0 and summary["approximation_gap"] > -2 * summary["approximation_gap_se"]
    assert summary["converged"] == 1.0
    assert summary["planar_bound"] <= summary["local_bound"] + 2 * summary["planar_gain_se"]  # a richer family
    for proposal in ("amortised", "local", "planar"):  # the lowest of the proposals' estimates, per image
        assert (scores["nll"] <= scores[f"nll_{proposal}"]).all()
    assert summary["nll_amortised_excess"] >= 0 and (scores["nll_se"] > 0).all()


def test_the_likelihood_estimate_and_its_delta_method_error():
    log_w = torch.log(torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 2.0], [6.0, 2.0]], dtype=torch.float64))
    estimate = nll_estimates(log_w)
    torch.testing.assert_close(estimate["nll"], -torch.log(torch.tensor([3.0, 2.0], dtype=torch.float64)))
    torch.testing.assert_close(estimate["nll_half"], -torch.log(torch.tensor([2.0, 2.0], dtype=torch.float64)))
    se = torch.tensor([1.0, 2.0, 3.0, 6.0]).std() / (3.0 * math.sqrt(4))
    torch.testing.assert_close(estimate["nll_se"], torch.tensor([se.item(), 0.0], dtype=torch.float64))


def test_the_exact_posterior_as_proposal_gives_the_exact_likelihood_for_every_image_of_every_batch():
    model, _ = linear_gaussian(diagonal_posterior=True)
    x = model.marginal.sample((25,))  # more images than one batch of the importance sampling
    loc = torch.linalg.solve(model.precision, model.weight.T @ (x - model.bias).T).T / model.sigma**2
    log_scale = -0.5 * torch.diagonal(model.precision).log().expand(25, 3)
    posterior = SimpleNamespace(parameters=(loc, log_scale, None), flow=None)  # what fitted_nll reads of a LocalBound
    estimate = fitted_nll(model, posterior, x, samples=40, seed=0)
    torch.testing.assert_close(estimate["nll"], -model.marginal.log_prob(x))
    torch.testing.assert_close(estimate["nll_half"], -model.marginal.log_prob(x))
    assert (estimate["nll_se"] < 1e-6).all()


def test_the_lowest_estimate_is_kept_per_image_with_its_own_error():
    one = {"nll": torch.tensor([1.0, 5.0]), "nll_half": torch.tensor([1.5, 4.0]), "nll_se": torch.tensor([0.1, 0.2])}
    two = {"nll": torch.tensor([2.0, 3.0]), "nll_half": torch.tensor([2.5, 3.5]), "nll_se": torch.tensor([0.3, 0.4])}
    scores = lowest_nll({"amortised": one, "local": two})
    torch.testing.assert_close(scores["nll"], torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(scores["nll_se"], torch.tensor([0.1, 0.4]))
    torch.testing.assert_close(scores["nll_half"], torch.tensor([1.5, 3.5]))
    torch.testing.assert_close(scores["nll_local"], two["nll"])


def test_the_settings_name_the_proposals_of_the_estimate():
    assert _config()["nll_proposals"] == ["amortised", "local"]
    assert _config(local_planar=4)["nll_proposals"] == ["amortised", "local", "planar"]


@pytest.fixture
def float32_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # as MNIST runs train
    yield
    torch.set_default_dtype(previous)


@pytest.mark.slow
def test_an_analysis_is_cached_with_its_settings(tmp_path, mnist_available, float32_default):
    config = mnist_config(
        flow="none", length=0, protocol="test", updates=20, anneal_updates=10, eval_every=10, eval_samples=4
    )
    fit = dict(samples=2, check_every=5, check_samples=10, max_steps=10, final_samples=10)
    settings = gap_config(config, images=3, nll_samples=10, fit=fit)
    with pytest.raises(ValueError, match="is not cached: train it first"):
        fit_gaps(settings, tmp_path)
    assert fit_gaps(settings, tmp_path, train=False) is None
    run = fit_mnist(tmp_path, **config)  # 20 updates: no parameters kept, so the analysis retrains them
    gaps = fit_gaps(settings, tmp_path)
    assert gaps.config["run"] == run.config and gaps.config["fit"]["max_steps"] == 10
    assert parameters_entry(run, tmp_path).metrics["difference"]["test_nll"] == 0.0
    summary = json.loads((gaps.path / "metrics.json").read_text())
    assert summary["inference_gap"] == pytest.approx(summary["approximation_gap"] + summary["amortisation_gap"])
    assert fit_gaps(settings, tmp_path, train=False).path == gaps.path  # found, not redone
    with pytest.raises(ValueError, match="images must be"):
        gap_config(config, images=0)
