"""MNIST training and scoring on the real files (tiny budgets)."""

from __future__ import annotations

import os

import pytest
import torch

import nf.mnist
from nf.data import DataError, load_mnist_pixels
from nf.mnist import fit_mnist, mnist_config

TINY = dict(flow="planar", length=2, updates=30, anneal_updates=10, eval_every=10, eval_samples=4)


@pytest.fixture(scope="module", autouse=True)
def mnist_available():
    try:
        load_mnist_pixels("test")
    except DataError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MNIST not available here: {error}")


@pytest.fixture(autouse=True)
def float32_default():
    torch.set_default_dtype(torch.float32)


def test_tiny_run_scores_consistently(tmp_path):
    run = fit_mnist(tmp_path, **TINY)
    m = run.load_json("metrics.json")
    assert m["test_kl"] == pytest.approx(m["test_bound"] - m["test_nll"])
    assert m["test_nll"] <= m["test_bound"]  # importance sampling tightens the bound
    assert [h[0] for h in m["history"]] == [10, 20, 30]
    images = run.load_tensors("images.pt")
    assert images["samples"].shape == (64, 784) and images["reconstructions"].shape == (16, 784)


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    reference = fit_mnist(tmp_path / "a", **TINY).load_json("metrics.json")

    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def interrupting_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupting_step)
    monkeypatch.setattr(nf.mnist, "train_mnist", _with_checkpoint_every(nf.mnist.train_mnist, 10))
    with pytest.raises(KeyboardInterrupt):
        fit_mnist(tmp_path / "b", **TINY)
    assert list((tmp_path / "b" / "mnist").glob("*.checkpoint.pt"))
    resumed_steps = {"n": 0}

    def counting_step(self, *args, **kwargs):
        resumed_steps["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    resumed = fit_mnist(tmp_path / "b", **TINY).load_json("metrics.json")
    assert resumed_steps["n"] == 10  # resumed from the checkpoint at update 20, not from scratch
    for key in ("test_bound", "test_nll", "history"):
        assert resumed[key] == reference[key]


def _with_checkpoint_every(train, every):
    def train_often(*args, **kwargs):
        return train(*args, checkpoint_every=every, **kwargs)

    return train_often


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"flow": "nice"}, "unknown DLGM flow 'nice'"),
        ({"length": -1}, "length must be a non-negative integer, got -1"),
        ({"updates": 0}, "updates must be a positive integer, got 0"),
        ({"anneal_updates": 20_000}, "never reaches beta = 1"),
    ],
)
def test_bad_mnist_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        mnist_config(**overrides)
