"""Runs trained as jobs through submitit's local executor: real subprocesses, the ``ci`` profile, no mocks."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import submitit
import torch

from nf.book.chapter_runs import chapter_configs, configs_to_train
from nf.book.cli import main
from nf.experiments.jobs import (
    TrainRuns,
    describe,
    job_batches,
    make_executor,
    run_local_jobs,
    runs_to_submit,
    slurm_parameters,
    slurm_script,
    submit_jobs,
)
from nf.experiments.mnist import mnist_config
from nf.runs.cache import checkpoint_path, config_hash, lookup
from nf.runs.checkpoint import load_checkpoint
from nf.runs.status import record_job, status_rows, status_summary


@pytest.fixture(autouse=True)
def float32_default():
    torch.set_default_dtype(torch.float32)


def _mnist_ci_runs(count: int) -> list[tuple[str, dict]]:
    runs = [run for run in chapter_configs("mnist", "ci") if run[0] == "mnist"][:count]
    assert len(runs) == count
    return runs


@pytest.mark.slow
@pytest.mark.usefixtures("mnist_available")
def test_two_missing_runs_are_trained_by_two_jobs(tmp_path):
    runs = _mnist_ci_runs(2)
    results = tmp_path / "results"
    assert status_summary(status_rows(runs, results)) == "2 runs: 2 missing"

    lines: list[str] = []
    todo, states = runs_to_submit(runs, results_dir=results)
    assert todo == runs and states == ["missing", "missing"]
    errors = run_local_jobs(todo, tmp_path / "jobs", 2, results, report=lines.append)
    assert errors == []
    assert sum(" started: mnist run " in line for line in lines) == 2
    assert sum(" finished: mnist run " in line for line in lines) == 2
    assert status_summary(status_rows(runs, results)) == "2 runs: 2 cached"
    assert runs_to_submit(runs, results_dir=results) == ([], ["cached", "cached"])


def _start_and_wait_for_a_checkpoint(config, results, jobs_folder):
    """Submit one job training ``config``; return it as soon as its run has saved a second checkpoint (with
    ``checkpoint_every=1`` the run saves at every update), while it is still training."""
    (job,) = submit_jobs([("mnist", config)], make_executor("local", jobs_folder), results, checkpoint_every=1)
    checkpoint, deadline, saves = checkpoint_path("mnist", config, results), time.monotonic() + 300, set()
    while len(saves) < 2:  # cheap polling (a stat, not a load), so the job is stopped early in its run
        assert not job.done(), "the job ended before its second checkpoint: give the test run more updates"
        assert time.monotonic() < deadline, "no second checkpoint after five minutes"
        try:
            stat = checkpoint.stat()
            saves.add((stat.st_ino, stat.st_mtime_ns))  # each save is a new file renamed into place
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return job


def _task_pid(job) -> int:
    """The process of a local job's task: the child of submitit's controller process."""
    controller = job._process.pid
    (task,) = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    return int(task)


def _uninterrupted_twin(config, results):
    threads = torch.get_num_threads()
    try:
        TrainRuns(str(results))([("mnist", config)])  # in this process, one thread like the jobs
    finally:
        torch.set_num_threads(threads)
    return lookup("mnist", config, results)


def _assert_same_numbers(run, twin):
    assert run.metrics["history"] == twin.metrics["history"]
    for name, scores in twin.load_tensors("scores.pt").items():
        assert torch.equal(run.load_tensors("scores.pt")[name], scores), name


@pytest.fixture
def long_ci_config():
    """A ``ci`` MNIST config long enough to be stopped mid-run, with a history row (a checkpoint) every 50."""
    (_, config), *_ = _mnist_ci_runs(1)
    return mnist_config(**{**config, "updates": 800, "eval_every": 50})


@pytest.mark.slow
@pytest.mark.usefixtures("mnist_available")
def test_a_killed_job_resumes_on_resubmission_to_the_same_numbers(tmp_path, long_ci_config):
    config, killed = long_ci_config, tmp_path / "killed"
    job = _start_and_wait_for_a_checkpoint(config, killed, tmp_path / "jobs")
    os.kill(_task_pid(job), signal.SIGKILL)  # a hard kill, as when a node fails (no chance to clean up)
    while not job.done():
        time.sleep(0.02)
    assert lookup("mnist", config, killed) is None, "the job finished before it was killed"
    stopped_at = load_checkpoint(checkpoint_path("mnist", config, killed))["step"]
    assert 1 <= stopped_at < 800
    # its process is dead: interrupted at once, however fresh its checkpoint, and submitted again
    assert runs_to_submit([("mnist", config)], results_dir=killed) == ([("mnist", config)], ["interrupted"])

    lines: list[str] = []
    assert run_local_jobs([("mnist", config)], tmp_path / "jobs", 1, killed, report=lines.append) == []
    assert [line.split(": ")[0].split()[-1] for line in lines] == ["started", "finished"]
    _assert_same_numbers(lookup("mnist", config, killed), _uninterrupted_twin(config, tmp_path / "twin"))
    assert not checkpoint_path("mnist", config, killed).exists()


@pytest.mark.slow
@pytest.mark.usefixtures("mnist_available")
def test_a_preempted_job_is_requeued_and_resumes_by_itself(tmp_path, long_ci_config):
    config, preempted = long_ci_config, tmp_path / "preempted"
    job = _start_and_wait_for_a_checkpoint(config, preempted, tmp_path / "jobs")
    os.kill(_task_pid(job), submitit.JobEnvironment._usr_sig())  # what a scheduler sends before preempting a job
    assert job.result() == [config_hash("mnist", config)]  # the same job, requeued, finished the run
    assert "preempted" in job.stderr() and "Requeued job" in job.stdout()
    _assert_same_numbers(lookup("mnist", config, preempted), _uninterrupted_twin(config, tmp_path / "twin"))


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
        ([], "error: choose where jobs run: --executor local or slurm"),
        (["--executor", "pbs"], "error: unknown executor 'pbs'; choose one of local, slurm"),
        (["--executor", "local", "--slurm-time", "5"], "error: --slurm-time applies only to --executor slurm"),
        (["--executor", "slurm", "--device", "cuda"], "error: --device cuda needs --slurm-gpus-per-job 1 or more"),
        (["--executor", "slurm", "--device", "tpu"], "error: unknown device 'tpu'; choose one of cpu, cuda"),
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
    assert "4 runs settled: 4 missing; 2 jobs to submit" in out and out.count(" finished: ") == 2
    assert main(["runs", "status", "toy", "--profile", "ci", *small]) == 0
    assert capsys.readouterr().out.strip().endswith("4 runs: 4 cached")
    assert main(["runs", "train", "toy", "--profile", "ci", *small, "--executor", "local"]) == 0
    out = capsys.readouterr().out  # cached runs are not submitted
    assert "4 runs settled: 4 cached; 0 jobs to submit" in out and "started" not in out


def test_the_mnist_ladder_waits_for_its_recipe_study(tmp_path, monkeypatch):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))
    runs, waiting = configs_to_train("mnist", "ci")
    # settled: the study (validation set) and the paper's-regime runs, whose recipe is the paper's, not chosen
    tested = [config for _, config in runs if config["protocol"] == "test"]
    assert tested and {config["optimizer"] for config in tested} == {"rmsprop"}
    assert len(runs) < len(chapter_configs("mnist", "ci")) and "waits for the recipe study" in waiting


@pytest.mark.slow
def test_a_failed_job_is_reported_by_its_exception(tmp_path):
    lines: list[str] = []
    bad = [("toy", {"energy": "U9", "family": "planar", "length": 2})]
    errors = run_local_jobs(bad, tmp_path / "jobs", 1, tmp_path / "results", report=lines.append)
    assert len(errors) == 1 and lines[-1] == errors[0]
    assert "ValueError: unknown energy 'U9'" in errors[0] and errors[0].endswith("_log.err")


def test_the_progress_hint_keeps_the_overrides_and_an_empty_submission_says_so():
    from nf.book.cli import status_command, submitted_line

    assert status_command("mnist", "paper", [("ladder.common", "{updates: 2000}")]) == (
        "python -m nf runs status mnist --profile paper -p ladder.common '{updates: 2000}'"
    )
    assert status_command("toy", "report", []) == "python -m nf runs status toy --profile report"
    assert submitted_line([]) == "submitted no jobs"
    assert submitted_line(["17", "18"]) == "submitted 2 jobs: 17, 18"


def test_the_command_leaves_queued_runs_alone_unless_forced(tmp_path, monkeypatch, capsys):
    """Runs whose recorded SLURM job is still pending are not submitted again (``squeue`` faked); ``--force`` submits
    them too."""
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr("nf.runs.status.slurm_queue", lambda ids: {job: ("PENDING", "Priority") for job in ids})
    runs = chapter_configs("toy", "ci")
    for (experiment, config), job in zip(runs[:2], ["7_0", "7_1"]):
        record_job(experiment, config, "slurm", job)
    command = ["runs", "train", "toy", "--profile", "ci", "--executor", "local", "--dry-run", "--toy-batch", "1"]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "4 runs settled: 2 queued, 2 missing; 2 jobs to submit" in out
    assert "2 queued runs are left alone" in out and out.count("job: toy run") == 2
    assert main([*command, "--force"]) == 0
    out = capsys.readouterr().out
    assert "4 jobs to submit" in out and "left alone" not in out
    assert main(["runs", "status", "toy", "--profile", "ci"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("queued ") and lines[0].endswith("(SLURM PENDING (Priority), job 7_0)")
    assert lines[-1] == "4 runs: 2 queued, 2 missing"


def test_the_command_trains_only_the_runs_named_by_their_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))
    runs = chapter_configs("toy", "ci")
    keys = [config_hash(experiment, config) for experiment, config in runs]
    command = ["runs", "train", "toy", "--profile", "ci", "--executor", "local", "--dry-run", "--toy-batch", "1"]
    assert main([*command, "--keys", keys[2], keys[0], keys[2]]) == 0
    out = capsys.readouterr().out
    assert "2 runs settled: 2 missing; 2 jobs to submit" in out and out.count("job: toy run") == 2
    chosen = [describe([run]) for run in (runs[2], runs[0])]  # in the order given, each once
    assert [line[len("job: ") :] for line in out.splitlines() if line.startswith("job: ")] == chosen


def test_a_key_that_is_not_a_settled_run_of_the_chapter_gets_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))
    command = ["runs", "train", "mnist", "--profile", "ci", "--executor", "local", "--dry-run", "--keys"]
    assert main([*command, "0123456789abcdef", "-p", "ladder.common", "{updates: 30, anneal_updates: 10}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: '0123456789abcdef' is not a run of chapter mnist (profile ci)") and "\n" not in err
    assert err.endswith(
        "runs status mnist --profile ci -p ladder.common '{updates: 30, anneal_updates: 10}' lists its runs' keys"
    )
    settled = {config_hash(*run) for run in configs_to_train("mnist", "ci")[0]}
    waiting = [key for key in (config_hash(*run) for run in chapter_configs("mnist", "ci")) if key not in settled]
    assert main([*command, waiting[0]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: run {waiting[0]} is not settled yet: it waits for runs it depends on; train those first"
