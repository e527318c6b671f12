"""Runs survive SIGINT and SIGKILL, resume to the same numbers, and stop cleanly on divergence."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

import nf.experiments.toy
from nf.experiments.toy import fit_toy, toy_config
from nf.experiments.training import TrainingDiverged
from nf.runs.cache import lookup

pytestmark = pytest.mark.slow  # subprocesses, chapter runs or a browser

SETTINGS = dict(
    energy="U1", family="planar", length=4, updates=6000, anneal_updates=1000, batch_size=64, eval_samples=2000
)
SCRIPT = (
    f"import sys; from nf.experiments.toy import fit_toy; fit_toy(sys.argv[1], checkpoint_every=50, **{SETTINGS!r})"
)


def start(results_dir):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(results_dir)], stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(results_dir, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((results_dir / "toy").glob("*.checkpoint.pt")) and process.poll() is None:
            time.sleep(0.5)  # let a few more checkpoints go by
            return
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], check=True)
    return lookup("toy", toy_config(**SETTINGS), folder)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_run_resumes_to_the_same_numbers(tmp_path, uninterrupted, sig):
    process = start(tmp_path)
    wait_for_checkpoint(tmp_path, process)
    process.send_signal(sig)
    process.wait(timeout=60)
    assert process.returncode != 0
    assert lookup("toy", toy_config(**SETTINGS), tmp_path) is None  # nothing half-written in the cache
    assert list((tmp_path / "toy").glob("*.checkpoint.pt"))

    rerun = start(tmp_path)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    resumed = lookup("toy", toy_config(**SETTINGS), tmp_path)
    assert resumed is not None
    a, b = resumed.load_json("metrics.json"), uninterrupted.load_json("metrics.json")
    assert a["free_energy"] == b["free_energy"] and a["history"] == b["history"]
    for name, tensor in resumed.load_tensors("model.pt").items():
        assert torch.equal(tensor, uninterrupted.load_tensors("model.pt")[name])
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == [resumed.key]  # checkpoint and temp folders gone


def test_divergence_stops_with_a_clear_message_and_no_entry(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = nf.experiments.toy.target_energy

    def poisoned(name):
        energy = real(name)

        def u(z):
            calls["n"] += 1
            return energy(z) * (float("nan") if calls["n"] > 120 else 1.0)

        return u

    monkeypatch.setattr(nf.experiments.toy, "target_energy", poisoned)
    settings = dict(SETTINGS, updates=400, anneal_updates=100)
    with pytest.raises(
        TrainingDiverged, match=r"loss became nan at update 120; the last finite loss was -?\d+\.\d+ at update 119"
    ):
        fit_toy(tmp_path, checkpoint_every=50, **settings)
    assert lookup("toy", toy_config(**settings), tmp_path) is None
    checkpoints = list((tmp_path / "toy").glob("*.checkpoint.pt"))
    assert len(checkpoints) == 1
    state = torch.load(checkpoints[0], weights_only=False)
    assert state["step"] == 100 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert [p.name for p in (tmp_path / "toy").iterdir()] == [checkpoints[0].name]


def test_first_interrupt_waits_for_the_update_boundary_second_is_immediate():
    import os

    from nf.runs.checkpoint import interrupt_between_updates

    previous = signal.getsignal(signal.SIGINT)
    with interrupt_between_updates() as interrupt:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs; no exception yet
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_checkpoint_that_does_not_fit_the_model_is_named_and_kept(tmp_path):
    from nf.experiments.training import make_optimizer, resume, training_state
    from nf.runs.checkpoint import Checkpointer

    config = {"optimizer": "adam", "learning_rate": 1e-3, "momentum": 0.9}
    old = torch.nn.Linear(3, 2)
    checkpointer = Checkpointer(tmp_path / "run.checkpoint.pt")
    optimizer = make_optimizer([{"params": list(old.parameters()), "scale": 1.0}], config)
    checkpointer.save(training_state(config, 10, old, optimizer, [], 1.0))
    new = torch.nn.Sequential(torch.nn.Linear(3, 2))  # the same weights under other names
    optimizer = make_optimizer([{"params": list(new.parameters()), "scale": 1.0}], config)
    with pytest.raises(ValueError, match=r"run\.checkpoint\.pt does not fit this model .*delete it"):
        resume(checkpointer, config, new, optimizer)
    assert checkpointer.load()["step"] == 10


REQUEUE_SCRIPT = (
    "import signal, sys, torch\n"
    "from pathlib import Path\n"
    "from nf.experiments.toy import fit_toy\n"
    "from nf.runs.checkpoint import load_checkpoint\n"
    "def requeue(signum, frame):  # as submitit's: the job is requeued, then this process ends\n"
    "    saved = sorted(Path(sys.argv[1], 'toy').glob('*.checkpoint.pt'))\n"
    "    Path(sys.argv[1], 'requeued').write_text(str(load_checkpoint(saved[0])['step']))\n"
    "    sys.exit(3)\n"
    "signal.signal(signal.SIGUSR2, requeue)\n"
    f"fit_toy(sys.argv[1], checkpoint_every=1000, **{SETTINGS!r})\n"
)


def test_a_scheduler_signal_waits_for_the_run_to_save_then_requeues_it(tmp_path, uninterrupted):
    """SIGUSR2 (submitit's time limit or preemption) is held to the next update boundary: the run saves there, and
    only then does the waiting handler run (and end the process); the resumed run loses no update."""
    process = subprocess.Popen([sys.executable, "-c", REQUEUE_SCRIPT, str(tmp_path)], stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGUSR2)
    assert process.wait(timeout=60) == 3, process.stderr.read()
    (checkpoint,) = (tmp_path / "toy").glob("*.checkpoint.pt")
    saved_at = torch.load(checkpoint, weights_only=True)["step"]
    assert int((tmp_path / "requeued").read_text()) == saved_at  # saved before the handler ran
    assert saved_at % 1000 != 0  # not a routine checkpoint: the save the signal asked for
    rerun = start(tmp_path)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    resumed = lookup("toy", toy_config(**SETTINGS), tmp_path)
    assert resumed.load_json("metrics.json")["free_energy"] == uninterrupted.load_json("metrics.json")["free_energy"]
