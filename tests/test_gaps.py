"""Where the gap goes (nf.experiments.gaps): the decomposition adds up, F* stays above -ln p(x), the entry is cached."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
from types import SimpleNamespace

import pytest
import torch
from test_local_bound import linear_gaussian

import nf.experiments.gaps as gaps
from nf.experiments.gaps import (
    PROPOSALS,
    analyse,
    cross_fitted,
    cross_fitted_nll,
    fit_gaps,
    fitted_nll,
    gap_config,
    nll_estimates,
    summarize_gaps,
)
from nf.experiments.mnist import fit_mnist, mnist_config
from nf.experiments.trained import parameters_entry
from nf.models.dlgm import DLGM
from nf.runs.checkpoint import load_checkpoint, save_atomically

FIT = dict(learning_rate=3e-2, samples=8, check_every=25, check_samples=200, max_steps=600, final_samples=400)


def _config(**overrides) -> dict:
    run = mnist_config(flow="planar", length=2, protocol="test")
    return gap_config(run, images=6, nll_samples=2000, fit=FIT, **overrides)


@pytest.mark.parametrize("flow,length", [("none", 0), ("planar", 2)])
def test_the_gaps_add_up_and_the_local_bound_stays_above_the_likelihood(flow, length):
    torch.manual_seed(0)
    model = DLGM(flow, length, latent=3, hidden=12, data_dim=20)
    images = torch.bernoulli(torch.rand(6, 20, generator=torch.Generator().manual_seed(1)))
    scores, seconds = analyse(model, images, _config(local_planar=4))  # every model gets the same three proposals
    assert seconds > 0
    summary = summarize_gaps(scores)
    total = summary["approximation_gap"] + summary["amortisation_gap"]
    assert summary["inference_gap"] == pytest.approx(total, abs=1e-9)
    assert summary["amortisation_gap"] > 0  # an untrained encoder is far from each image's best parameters
    assert summary["below_nll"] == 0 and summary["approximation_gap"] > -2 * summary["approximation_gap_se"]
    assert summary["converged"] == 1.0
    assert summary["planar_bound"] <= summary["local_bound"] + 2 * summary["planar_gain_se"]  # a richer family
    assert (scores["nll_se"] > 0).all() and scores["nll_choice"].shape == (2, 6)
    assert sum(summary[f"chosen_{p}"] for p in PROPOSALS) == pytest.approx(1.0)
    assert 0 <= summary["proposals_disagree"] <= 6
    assert all(1 <= summary[f"ess_{p}"] <= 2000 for p in PROPOSALS)


def _interrupting(work, at: int):
    """``work`` (a fit or an estimate whose ``at_step`` or ``at_batch`` comes last), sending this process SIGINT at its
    ``at``-th step or batch."""

    def wrapped(*args):
        *arguments, at_step = args
        calls = itertools.count(1)

        def signalling(state):
            if next(calls) == at:
                os.kill(os.getpid(), signal.SIGINT)
            at_step(state)

        return work(*arguments, signalling)

    return wrapped


def _interrupting_estimate(estimate):
    def wrapped(*args):
        result = estimate(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return result

    return wrapped


def _analysed_once():
    """A small planar DLGM, six images, an analysis config, and that analysis made without a checkpoint."""
    torch.manual_seed(0)
    model = DLGM("planar", 2, latent=3, hidden=12, data_dim=20)
    images = torch.bernoulli(torch.rand(6, 20, generator=torch.Generator().manual_seed(1)))
    config = _config(local_planar=4)
    return model, images, config, analyse(model, images, config)[0]


# where an analysis is interrupted (the function, at its step or batch; None: as it returns), and what is saved there:
# the fits begun, the estimates made, the estimate begun, the progress line
STOPS = {
    "fit of F*": ("locally_optimised_bound", 30, ["local"], [], [], "fit of F* at step 30"),
    "planar fit": ("local_planar_bound", 30, ["local", "planar"], [], [], "decoder's planar fit at step 30"),
    "after an estimate": (
        "amortised_nll",
        None,
        ["local", "planar"],
        ["amortised"],
        [],
        "1 of 3 estimates of -ln p(x) made",
    ),
    "in the first estimate": (
        "amortised_nll",
        2,
        ["local", "planar"],
        [],
        ["amortised"],
        "0 of 3 estimates of -ln p(x) made, the next at image 4 of 6",
    ),
    "in a fitted estimate": (
        "fitted_nll",
        2,
        ["local", "planar"],
        ["amortised"],
        ["local"],
        "1 of 3 estimates of -ln p(x) made, the next at image 4 of 6",
    ),
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_an_analysis_interrupted_in_any_stage_resumes_to_the_numbers_of_one_never_stopped(stop, tmp_path, monkeypatch):
    monkeypatch.setattr(gaps, "_NLL_BATCH", 2)  # three batches of images in each estimate
    model, images, config, whole = _analysed_once()
    checkpoint = tmp_path / ".analysis.checkpoint.pt"
    where, at, fits, estimates, partial, progress = STOPS[stop]
    original = getattr(gaps, where)
    monkeypatch.setattr(gaps, where, _interrupting_estimate(original) if at is None else _interrupting(original, at))
    with pytest.raises(KeyboardInterrupt):
        analyse(model, images, config, checkpoint)
    saved = load_checkpoint(checkpoint)
    assert (list(saved["fits"]), list(saved["estimates"]), list(saved["partial"])) == (fits, estimates, partial)
    assert saved["progress"] == progress  # what runs status shows
    monkeypatch.setattr(gaps, where, original)
    save_atomically({**saved, "seconds": 1e6}, checkpoint)  # as if the first process had run for days
    resumed, seconds = analyse(model, images, config, checkpoint)
    assert 1e6 < seconds < 1e6 + 600  # the time of both processes
    assert resumed.keys() == whole.keys()
    for name, value in whole.items():
        assert torch.equal(resumed[name], value), name


def test_a_checkpoint_of_another_analysis_is_ignored_and_one_that_does_not_fit_is_named(tmp_path, monkeypatch):
    model, images, config, whole = _analysed_once()
    checkpoint = tmp_path / ".analysis.checkpoint.pt"
    monkeypatch.setattr(gaps, "amortised_nll", _interrupting_estimate(gaps.amortised_nll))
    with pytest.raises(KeyboardInterrupt):
        analyse(model, images, config, checkpoint)
    monkeypatch.undo()
    saved = load_checkpoint(checkpoint)
    other = {**saved, "config": _config(local_planar=3), "estimates": {}}  # another analysis's, fits swapped
    other["fits"] = {"local": saved["fits"]["planar"], "planar": saved["fits"]["local"]}
    save_atomically(other, checkpoint)
    again, _ = analyse(model, images, config, checkpoint)  # started afresh
    assert all(torch.equal(again[name], value) for name, value in whole.items())
    save_atomically({**other, "config": config}, checkpoint)  # this analysis's config, another fit's tensors
    with pytest.raises(ValueError, match=r"^the checkpoint .*\.analysis\.checkpoint\.pt does not fit this analysis "):
        analyse(model, images, config, checkpoint)


def test_the_likelihood_estimates_of_a_proposal_from_all_its_draws_its_halves_and_quarters():
    weights = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 2.0], [6.0, 2.0]], dtype=torch.float64)
    estimate = nll_estimates(torch.log(torch.cat([weights, weights[:1]])))  # the fifth draw is cut (S = 4)
    torch.testing.assert_close(estimate["nll"], -torch.log(torch.tensor([3.0, 2.0], dtype=torch.float64)))
    halves = -torch.log(torch.tensor([[2.0, 2.0], [4.0, 2.0]], dtype=torch.float64))
    torch.testing.assert_close(estimate["halves"], halves)
    torch.testing.assert_close(estimate["quarters"], -weights.log())
    se = torch.tensor([1.0, 2.0, 3.0, 6.0]).std() / (3.0 * math.sqrt(4))
    torch.testing.assert_close(estimate["nll_se"], torch.tensor([se.item(), 0.0], dtype=torch.float64))
    first_half_se = torch.tensor([1.0, 3.0]).std() / (2.0 * math.sqrt(2))
    torch.testing.assert_close(estimate["halves_se"][0, 0], first_half_se.double())
    torch.testing.assert_close(estimate["ess"], torch.tensor([144 / 50, 4.0], dtype=torch.float64))  # Kish


def test_the_exact_posterior_as_proposal_gives_the_exact_likelihood_for_every_image_of_every_batch():
    model, _ = linear_gaussian(diagonal_posterior=True)
    x = model.marginal.sample((25,))  # more images than one batch of the importance sampling
    loc = torch.linalg.solve(model.precision, model.weight.T @ (x - model.bias).T).T / model.sigma**2
    log_scale = -0.5 * torch.diagonal(model.precision).log().expand(25, 3)
    posterior = SimpleNamespace(parameters=(loc, log_scale, None), flow=None)  # what fitted_nll reads of a LocalBound
    estimate = fitted_nll(model, posterior, x, samples=40, seed=0)
    exact = -model.marginal.log_prob(x)
    torch.testing.assert_close(estimate["nll"], exact)
    torch.testing.assert_close(estimate["halves"], exact.expand(2, 25))
    torch.testing.assert_close(estimate["quarters"], exact.expand(4, 25))
    assert (estimate["nll_se"] < 1e-6).all() and torch.allclose(estimate["ess"], torch.tensor(40.0).double())


def test_the_proposal_chosen_on_one_half_of_the_draws_is_scored_on_the_other():
    parts = torch.tensor(
        [
            [[1.0, 5.0], [9.0, 5.0]],  # proposal 0: lowest on the first half of image 0, high on its second
            [[2.0, 6.0], [3.0, 4.0]],  # proposal 1: lowest on the second half of both images
        ]
    )
    value, choices = cross_fitted(parts, 0, 1)
    torch.testing.assert_close(choices, torch.tensor([[0, 0], [1, 1]]))
    torch.testing.assert_close(value, torch.tensor([(9.0 + 2.0) / 2, (5.0 + 6.0) / 2]))


def test_the_cross_fitted_choice_is_not_pulled_down_by_lucky_draws_as_the_lowest_estimate_is():
    """Three proposals whose estimates scatter around the same value: the lowest per image falls below it, the
    cross-fitted choice does not (its mean is that of a single proposal's half-draw estimate)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(3, 4, 20_000, generator=generator, dtype=torch.float64)
    proposals = {
        name: {
            "halves": 90 + noise[i, :2],
            "halves_se": torch.ones(2, 20_000, dtype=torch.float64),
            "quarters": 90 + noise[i, 2:].repeat(2, 1),
            "nll": 90 + noise[i, :2].mean(0),
            "nll_se": torch.ones(20_000, dtype=torch.float64),
            "ess": torch.ones(20_000, dtype=torch.float64),
        }
        for i, name in enumerate(PROPOSALS)
    }
    scores = cross_fitted_nll(proposals)
    error = 3 * scores["nll"].std() / math.sqrt(20_000)
    assert abs(scores["nll"].mean() - 90) < error
    assert (torch.stack([p["halves"][0] for p in proposals.values()]).min(0).values.mean() - 90) < -0.8  # E[min]
    torch.testing.assert_close(scores["nll_se"], torch.full((20_000,), 0.5 * math.sqrt(2), dtype=torch.float64))
    assert set(scores) >= {"nll_quarter", "nll_choice", *(f"ess_{p}" for p in PROPOSALS)}


def test_the_fitted_proposals_disagree_where_their_estimates_differ_beyond_twice_their_combined_error():
    n = 4
    scores = {
        key: torch.zeros(n, dtype=torch.float64)
        for key in ("bound", "local_bound", "local_bound_se", "planar_bound", "nll_quarter", "nll_amortised")
    }
    scores.update(steps=torch.ones(n), converged=torch.ones(n, dtype=torch.bool), nll_choice=torch.zeros(2, n))
    scores.update(planar_converged=torch.ones(n, dtype=torch.bool), nll=torch.zeros(n, dtype=torch.float64))
    scores.update({f"ess_{p}": torch.ones(n) for p in PROPOSALS}, nll_se=torch.ones(n, dtype=torch.float64))
    scores["nll_local"] = torch.tensor([90.0, 90.0, 90.0, 90.3], dtype=torch.float64)
    scores["nll_planar"] = torch.tensor([90.0, 90.2, 90.5, 90.0], dtype=torch.float64)
    scores["nll_local_se"] = scores["nll_planar_se"] = torch.full((n,), 0.1, dtype=torch.float64)
    summary = summarize_gaps(scores)
    assert summary["proposals_disagree"] == 2  # 0.5 and 0.3 lie beyond 2 sqrt(2) 0.1 = 0.28; 0.2 does not
    assert summary["proposal_difference"] == pytest.approx((0 - 0.2 - 0.5 + 0.3) / 4)
    assert summary["chosen_amortised"] == 1.0 and summary["chosen_local"] == 0.0


def test_every_analysis_names_the_same_three_proposals_and_the_cross_fitted_choice():
    assert _config()["nll_proposals"] == list(PROPOSALS) and _config()["nll_choice"] == "cross-fitted halves"
    with pytest.raises(ValueError, match="local_planar"):
        _config(local_planar=0)


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
