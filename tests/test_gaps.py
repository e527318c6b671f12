"""Where the gap goes (nf.experiments.gaps): the decomposition adds up, F* stays above -ln p(x), the entry is cached."""

from __future__ import annotations

import json

import pytest
import torch

from nf.experiments.gaps import analyse, fit_gaps, gap_config, summarize_gaps
from nf.experiments.mnist import mnist_config
from nf.models.dlgm import DLGM
from nf.models.local_bound import LocalFit
from nf.runs.cache import cached_run

FIT = LocalFit(learning_rate=3e-2, samples=8, check_every=25, check_samples=200, max_steps=600, final_samples=400)


def _config(model: DLGM, **overrides) -> dict:
    run = type("R", (), {"key": "0" * 16, "config": mnist_config(flow="planar", length=2, protocol="test")})()
    return {**gap_config(run, images=6, nll_samples=2000, fit=FIT), **overrides}


@pytest.mark.parametrize("flow,length", [("none", 0), ("planar", 2)])
def test_the_gaps_add_up_and_the_local_bound_stays_above_the_likelihood(flow, length):
    torch.manual_seed(0)
    model = DLGM(flow, length, latent=3, hidden=12, data_dim=20)
    images = torch.bernoulli(torch.rand(6, 20, generator=torch.Generator().manual_seed(1)))
    scores = analyse(model, images, _config(model, local_planar=4))
    summary = summarize_gaps(scores)
    total = summary["approximation_gap"] + summary["amortisation_gap"]
    assert summary["inference_gap"] == pytest.approx(total, abs=1e-9)
    assert summary["amortisation_gap"] > 0  # an untrained encoder is far from each image's best parameters
    assert summary["below_nll"] == 0 and summary["approximation_gap"] > -2 * summary["approximation_gap_se"]
    assert summary["converged"] == 1.0
    assert summary["planar_bound"] <= summary["local_bound"] + 2 * summary["planar_gain_se"]  # a richer family


def test_an_analysis_is_cached_with_its_settings(tmp_path, mnist_available):
    config = mnist_config(flow="none", length=0, protocol="test", updates=20, anneal_updates=10, eval_every=10)

    def trained(config, folder, checkpoint):
        torch.manual_seed(0)
        torch.save(DLGM("none", 0).state_dict(), folder / "parameters.pt")
        (folder / "metrics.json").write_text("{}")

    run = cached_run("mnist", config, trained, tmp_path)
    fit = LocalFit(samples=2, check_every=5, check_samples=10, max_steps=10, final_samples=10)
    gaps = fit_gaps(run, tmp_path, images=3, nll_samples=10, fit=fit)
    assert gaps.config["run"] == run.key and gaps.config["fit"]["max_steps"] == 10
    summary = json.loads((gaps.path / "metrics.json").read_text())
    assert summary["inference_gap"] == pytest.approx(summary["approximation_gap"] + summary["amortisation_gap"])
    assert fit_gaps(run, tmp_path, images=3, nll_samples=10, fit=fit).path == gaps.path  # found, not redone
    with pytest.raises(ValueError, match="images must be"):
        gap_config(run, images=0)
