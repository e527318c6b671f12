"""MNIST training and scoring on the real files (tiny budgets)."""

from __future__ import annotations

import contextlib

import pytest
import torch

import nf.experiments.mnist
from nf.experiments.data import BinarizedMNIST
from nf.experiments.mnist import fit_mnist, mnist_config
from nf.experiments.trained import parameters_entry, retrain_parameters, trained_model
from nf.runs.cache import config_hash, lookup

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
def test_an_identity_started_run_records_its_start_and_trains(tmp_path):
    run = fit_mnist(tmp_path, **{**TINY, "flow": "conv", "flow_start": "identity"})
    random_start = config_hash("mnist", mnist_config(**{**TINY, "flow": "conv"}))
    assert run.config["flow_start"] == "identity" and run.key != random_start
    m = run.load_json("metrics.json")
    assert m["test_nll"] <= m["test_bound"] < float("inf")


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


def test_budget_points_need_a_constant_learning_rate_and_history_rows_on_them(monkeypatch):
    monkeypatch.setattr(nf.experiments.mnist, "BUDGET_EVERY", 10)
    settings = dict(TINY, anneal_updates=5)
    assert nf.experiments.mnist.budget_points(mnist_config(**settings)) == [10, 20]
    assert nf.experiments.mnist.budget_points(mnist_config(**dict(settings, anneal_updates=10))) == [20]  # beta < 1
    assert nf.experiments.mnist.budget_points(mnist_config(**settings, final_learning_rate=1e-4)) == []
    assert nf.experiments.mnist.budget_points(mnist_config(**dict(settings, eval_every=3))) == []
    with pytest.raises(ValueError, match=r"15 updates is not a budget point of this run \(its points: \[10, 20\]\)"):
        nf.experiments.mnist.budget_config(mnist_config(**settings), 15)


def _same_run(a, b):
    """Two runs with the same scores, per image, and the same history."""
    assert a.load_json("metrics.json")["history"] == b.load_json("metrics.json")["history"]
    for name, values in a.load_tensors("scores.pt").items():
        assert torch.equal(values, b.load_tensors("scores.pt")[name]), name


@pytest.mark.slow
def test_a_long_run_stores_the_runs_of_its_budget_points(tmp_path, monkeypatch):
    """With a constant learning rate, the budget points a 30-update run stores on its way are the runs of 10 and 20
    updates, score for score; runs that long keep their parameters, and the stored model scores as the run did."""
    monkeypatch.setattr(nf.experiments.mnist, "BUDGET_EVERY", 10)
    monkeypatch.setattr(nf.experiments.mnist, "KEEP_PARAMETERS_FROM", 20)
    settings = dict(TINY, protocol="test", anneal_updates=5)
    long = fit_mnist(tmp_path / "long", **settings)
    for updates in (10, 20):
        point = lookup("mnist", mnist_config(**dict(settings, updates=updates)), tmp_path / "long")
        assert point is not None and point.metrics["history"][-1][0] == updates
        _same_run(point, fit_mnist(tmp_path / f"short{updates}", **dict(settings, updates=updates)))
        assert (point.path / "parameters.pt").exists() == (updates >= 20)
    model = trained_model(long)
    assert sum(p.numel() for p in model.parameters()) == long.metrics["parameters"]
    test_images = BinarizedMNIST("test", "fixed", seed=0).images()
    rescored = nf.experiments.mnist.score_images(model, test_images, TINY["eval_samples"])["nll"].mean().item()
    assert rescored == pytest.approx(long.metrics["test_nll"], abs=0.5)  # an untrained model is 400 nats away
    with pytest.raises(ValueError, match="has no stored parameters: only runs of at least 20 updates keep them"):
        trained_model(lookup("mnist", mnist_config(**dict(settings, updates=10)), tmp_path / "long"))


class _InterruptAt:
    """Stands in for ``interrupt_between_updates``: a SIGINT arrives before the given updates (counted across runs)."""

    def __init__(self, steps):
        self.steps, self.checks = set(steps), 0

    def __call__(self):
        outer = self

        class Flag:
            def check(self, save=None):
                outer.checks += 1
                if outer.checks in outer.steps:
                    if save is not None:
                        save()
                    raise KeyboardInterrupt

        return contextlib.nullcontext(Flag())


@pytest.mark.slow
def test_a_run_interrupted_several_times_resumes_where_it_stopped_to_the_same_numbers(tmp_path, monkeypatch):
    """SIGINT saves the run at the update where it stops, between checkpoints and evaluation rows: three interrupts,
    three resumes, no update done twice, and the numbers (and budget points) of a run that never stopped."""
    monkeypatch.setattr(nf.experiments.mnist, "BUDGET_EVERY", 10)
    settings = dict(TINY, protocol="test", anneal_updates=5)
    reference = fit_mnist(tmp_path / "a", **settings)
    steps = {"n": 0}
    real_step = torch.optim.Adam.step

    def counting_step(self, *args, **kwargs):
        steps["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    # the n-th check of the flag comes before update n - 1 of the run (counting over the resumed runs too)
    monkeypatch.setattr(nf.experiments.mnist, "interrupt_between_updates", _InterruptAt([8, 16, 27]))
    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            fit_mnist(tmp_path / "b", **settings)
    resumed = fit_mnist(tmp_path / "b", **settings)
    assert steps["n"] == 30  # every update once: each resume started where the interrupt stopped the run
    _same_run(resumed, reference)
    for updates in (10, 20):
        config = mnist_config(**dict(settings, updates=updates))
        _same_run(lookup("mnist", config, tmp_path / "b"), lookup("mnist", config, tmp_path / "a"))


@pytest.mark.slow
def test_a_retrained_run_reproduces_its_scores_and_gives_its_model(tmp_path):
    run = fit_mnist(tmp_path, **dict(TINY, protocol="test"))
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
