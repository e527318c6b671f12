"""MNIST training and scoring on the real files (tiny budgets)."""

from __future__ import annotations

import pytest
import torch

import nf.experiments.mnist
from nf.experiments.mnist import fit_mnist, mnist_config

TINY = dict(flow="planar", length=2, updates=30, anneal_updates=10, eval_every=10, eval_samples=4)


pytestmark = pytest.mark.usefixtures("mnist_available")


@pytest.fixture(autouse=True)
def float32_default():
    torch.set_default_dtype(torch.float32)


@pytest.mark.slow
def test_tiny_run_scores_consistently(tmp_path):
    run = fit_mnist(tmp_path, **TINY)
    m = run.load_json("metrics.json")
    assert m["test_kl"] == pytest.approx(m["test_bound"] - m["test_nll"])
    assert m["test_nll"] <= m["test_bound"]  # importance sampling tightens the bound
    assert [h[0] for h in m["history"]] == [10, 20, 30]
    images = run.load_tensors("images.pt")
    assert images["samples"].shape == (64, 784) and images["reconstructions"].shape == (16, 784)


@pytest.mark.slow
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
    monkeypatch.setattr(
        nf.experiments.mnist, "train_mnist", _with_checkpoint_every(nf.experiments.mnist.train_mnist, 10)
    )
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
        ({"flow": "conv", "length": 2.5}, "length must be a non-negative integer, got 2.5"),
        ({"length": -1}, "length must be a non-negative integer, got -1"),
        ({"updates": 0}, "updates must be a positive integer, got 0"),
        ({"anneal_updates": 20_000}, "never reaches beta = 1"),
    ],
)
def test_bad_mnist_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        mnist_config(**overrides)


@pytest.mark.slow
def test_bad_worker_count():
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        nf.experiments.mnist.fit_mnist_runs([TINY], workers=0)


@pytest.mark.slow
def test_runs_in_parallel_workers_match_serial_runs(tmp_path):
    """Two worker processes give the same numbers as one process, in the order of the configs."""
    configs = [dict(TINY, flow="nice-perm+scale"), dict(TINY, flow="conv")]
    parallel = nf.experiments.mnist.fit_mnist_runs(configs, tmp_path / "parallel", workers=2)
    serial = nf.experiments.mnist.fit_mnist_runs(configs, tmp_path / "serial", workers=1)
    assert [r.config["flow"] for r in parallel] == ["nice-perm+scale", "conv"]
    for a, b in zip(parallel, serial):
        assert a.load_json("metrics.json")["test_bound"] == pytest.approx(
            b.load_json("metrics.json")["test_bound"], rel=1e-3
        )


@pytest.mark.slow
def test_paired_and_parameter_summaries(tmp_path):
    from nf.report.mnist import flow_parameters, paired_table, plot_versus_parameters, table2

    configs = [dict(TINY, flow="none", length=0), dict(TINY, flow="nice-perm"), dict(TINY, flow="nice-perm+scale")]
    runs = nf.experiments.mnist.fit_mnist_runs(configs, tmp_path)
    extra = flow_parameters(runs)
    assert extra[runs[0].key] == 0
    # +scale adds the head's 40 per-image log-scales: 400 weights and 1 bias each
    assert extra[runs[2].key] - extra[runs[1].key] == 40 * 401
    (row,) = paired_table(runs, "nice-perm", "nice-perm+scale")
    metrics = [r.load_json("metrics.json") for r in runs[1:]]
    assert row["K"] == "2"
    assert row["change in −ln p(x)"] == f"{metrics[1]['test_nll'] - metrics[0]['test_nll']:+.2f}"
    assert [r["paper -ln p(x)"] for r in table2(runs)] == ["89.9", "—", "—"]  # the paper has no NICE K=2 row
    ax = plot_versus_parameters(runs)
    assert len(ax.lines) >= 1
