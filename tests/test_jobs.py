"""Runs trained as jobs through submitit's local executor: real subprocesses, the ``ci`` profile, no mocks."""

from __future__ import annotations

import time

import pytest
import torch

from nf.book.chapter_runs import chapter_configs, configs_to_train
from nf.book.cli import main
from nf.experiments.jobs import (
    job_batches,
    make_executor,
    missing_runs,
    run_local_jobs,
    slurm_parameters,
    slurm_script,
    submit_jobs,
    train_runs,
)
from nf.experiments.mnist import mnist_config
from nf.runs.cache import checkpoint_path, lookup
from nf.runs.checkpoint import load_checkpoint
from nf.runs.status import status_rows, status_summary


@pytest.fixture(autouse=True)
def float32_default():
    torch.set_default_dtype(torch.float32)


def _mnist_ci_runs(count: int) -> list[tuple[str, dict]]:
    runs = [run for run in chapter_configs("mnist", "ci") if run[0] == "mnist"][:count]
    assert len(runs) == count
    return runs


@pytest.mark.slow
@pytest.mark.usefixtures("mnist_available")
def test_two_missing_runs_are_trained_by_two_jobs_and_cached_runs_are_not_submitted(tmp_path):
    runs = _mnist_ci_runs(2)
    results = tmp_path / "results"
    assert status_summary(status_rows(runs, results)) == "2 runs: 2 missing"

    lines: list[str] = []
    errors = run_local_jobs(missing_runs(runs, results), tmp_path / "jobs", 2, results, report=lines.append)
    assert errors == []
    assert sum(" started: mnist run " in line for line in lines) == 2
    assert sum(" finished: mnist run " in line for line in lines) == 2
    assert status_summary(status_rows(runs, results)) == "2 runs: 2 cached"

    assert missing_runs(runs, results) == []
    lines.clear()
    assert run_local_jobs(missing_runs(runs, results), tmp_path / "jobs", 2, results, report=lines.append) == []
    assert lines == []  # nothing submitted


@pytest.mark.slow
@pytest.mark.usefixtures("mnist_available")
def test_a_killed_job_resumes_on_resubmission_to_the_same_numbers(tmp_path):
    (_, config), *_ = _mnist_ci_runs(1)
    config = mnist_config(**{**config, "updates": 300, "eval_every": 150})
    runs = [("mnist", config)]
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    checkpoint = checkpoint_path("mnist", config, killed)

    (job,) = submit_jobs(runs, make_executor("local", tmp_path / "jobs"), killed, checkpoint_every=5)
    deadline = time.monotonic() + 120
    while (load_checkpoint(checkpoint) or {}).get("step", 0) < 5:
        assert not job.done() and time.monotonic() < deadline, "the job ended before its first checkpoint"
        time.sleep(0.05)
    job.cancel()  # SIGINT to the job, as a scheduler's cancel or a preemption would signal it
    while not job.done():
        time.sleep(0.05)
    stopped_at = load_checkpoint(checkpoint)["step"]
    assert lookup("mnist", config, killed) is None and 5 <= stopped_at < 300
    assert status_rows(runs, killed)[0]["state"] == "running"  # a fresh checkpoint: resumable

    assert run_local_jobs(runs, tmp_path / "jobs", 1, killed, checkpoint_every=5, report=lambda line: None) == []
    threads = torch.get_num_threads()
    try:
        train_runs(runs, str(reference))  # never interrupted, in this process, one thread like the jobs
    finally:
        torch.set_num_threads(threads)
    resumed, uninterrupted = (lookup("mnist", config, folder) for folder in (killed, reference))
    assert resumed.metrics["history"] == uninterrupted.metrics["history"]
    for name, scores in uninterrupted.load_tensors("scores.pt").items():
        assert torch.equal(resumed.load_tensors("scores.pt")[name], scores), name
    assert not checkpoint.exists()


def test_toy_runs_go_in_batches_and_mnist_runs_one_per_job():
    toy = [("toy", {"seed": s}) for s in range(20)]
    mnist = [("mnist", {"seed": s}) for s in range(2)]
    assert [len(batch) for batch in job_batches(toy + mnist, toy_batch=8)] == [8, 8, 4, 1, 1]
    assert job_batches([]) == []


def test_the_slurm_script_carries_the_options(tmp_path):
    script = slurm_script(slurm_parameters("gpu", 2, 90, 4, parallel_jobs=3), tmp_path, jobs=10)
    for line in ("--partition=gpu", "--gpus-per-node=2", "--time=90", "--cpus-per-task=4", "--array=0-9%3"):
        assert f"#SBATCH {line}\n" in script
    assert "submitit.core._submit" in script
    assert "--array" not in slurm_script(slurm_parameters(), tmp_path)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"gpus_per_job": -1}, "GPUs per job must be a non-negative integer, got -1"),
        ({"time_minutes": 0}, "job time in minutes must be a positive integer, got 0"),
        ({"partition": "a b"}, "invalid SLURM partition 'a b'"),
        ({"parallel_jobs": 0}, "parallel jobs must be a positive integer, got 0"),
    ],
)
def test_bad_slurm_options(options, message):
    with pytest.raises(ValueError, match=message):
        slurm_parameters(**options)


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--executor", "pbs"], "error: unknown executor 'pbs'; choose one of local, slurm"),
        (["--executor", "local", "--slurm-time", "5"], "error: --slurm-time apply only to --executor slurm"),
        (["--executor", "local", "--jobs", "0"], "error: jobs must be a positive integer, got 0"),
        (["--executor", "slurm", "--slurm-gpus-per-job", "-2"], "error: GPUs per job must be a non-negative"),
    ],
)
def test_bad_executor_options_get_one_line(arguments, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))
    assert main(["runs", "train", "toy", "--profile", "ci", *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err


def test_the_command_trains_a_chapter_with_local_jobs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))
    small = ["-p", "updates", "40", "-p", "anneal_updates", "10", "-p", "eval_samples", "50"]
    assert main(["runs", "status", "toy", "--profile", "ci", *small]) == 0
    assert capsys.readouterr().out.strip().endswith("4 runs: 4 missing")
    assert main(["runs", "train", "toy", "--profile", "ci", *small, "--executor", "local", "--toy-batch", "3"]) == 0
    out = capsys.readouterr().out
    assert "4 runs settled, 0 cached: 2 jobs for 4 runs" in out and out.count(" finished: ") == 2
    assert main(["runs", "status", "toy", "--profile", "ci", *small]) == 0
    assert capsys.readouterr().out.strip().endswith("4 runs: 4 cached")


def test_the_mnist_ladder_waits_for_its_recipe_study(tmp_path, monkeypatch):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))
    runs, waiting = configs_to_train("mnist", "ci")
    assert {config["protocol"] for _, config in runs} == {"validation"}
    assert len(runs) < len(chapter_configs("mnist", "ci")) and "waits for the recipe study" in waiting
