"""Trained models of runs that did not keep their parameters: retrained, checked against the run, found."""

from __future__ import annotations

import pytest
import torch

from nf.experiments.mnist import fit_mnist
from nf.experiments.trained import parameters_entry, retrain_parameters, trained_model

TINY = dict(flow="planar", length=2, updates=30, anneal_updates=10, eval_every=10, eval_samples=4, protocol="test")

pytestmark = pytest.mark.usefixtures("mnist_available")


@pytest.fixture(autouse=True)
def float32_default():
    torch.set_default_dtype(torch.float32)


@pytest.mark.slow
def test_a_retrained_run_reproduces_its_scores_and_gives_its_model(tmp_path):
    run = fit_mnist(tmp_path, **TINY)
    assert not (run.path / "parameters.pt").exists() and parameters_entry(run, tmp_path) is None
    with pytest.raises(ValueError, match="has no stored parameters.*retrain_parameters makes them"):
        trained_model(run, tmp_path)
    entry = retrain_parameters(run, tmp_path)
    check = entry.metrics
    assert check["cached"]["test_nll"] == run.metrics["test_nll"]
    assert check["difference"] == {"test_nll": 0.0, "test_bound": 0.0, "test_kl": 0.0}  # deterministic here
    model = trained_model(run, tmp_path)
    assert sum(p.numel() for p in model.parameters()) == run.metrics["parameters"]
    assert retrain_parameters(run, tmp_path).path == entry.path  # found, not retrained
