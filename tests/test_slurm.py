"""Runs trained as SLURM jobs on a real single-node cluster (``tests/slurm_cluster.py``), through
``python -m nf runs train --executor slurm`` and ``nf.experiments.jobs``: a capped job array, a cancelled job
resubmitted, a job requeued at its time limit, two submissions of one run at once, held jobs' runs queued and not
submitted again, and ``runs status`` along the way.  No mocks.  Skipped where no cluster can be started, except
in CI (``conftest.slurm``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nf.book.chapter_runs import chapter_configs
from nf.experiments.jobs import make_executor, slurm_parameters, submit_jobs
from nf.experiments.toy import toy_config, train_toy
from nf.runs.cache import checkpoint_path, config_hash, lookup
from nf.runs.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # a cluster, subprocesses, training

REPO = Path(__file__).resolve().parents[1]
SMALL = {"updates": 300, "anneal_updates": 100, "eval_samples": 100}  # the toy chapter's four ci runs, seconds each
ONE_RUN = {"energies": ["U1"], "families": ["planar"], "anneal_updates": 100, "eval_samples": 100}
LONG_SECONDS = 150  # the long run's updates on one thread here: past the first time-limit signal (60-90 s in)


def _options(overrides: dict) -> list[str]:
    """``-p NAME VALUE`` for each override (VALUE as YAML: lists in flow style)."""
    text = {list: lambda v: f"[{', '.join(map(str, v))}]"}
    return [x for k, v in overrides.items() for x in ("-p", k, text.get(type(v), str)(v))]


def _command(slurm, results: Path, action: str, *options: str, overrides: dict) -> dict:
    """``python -m nf runs ACTION toy --profile ci -p ... OPTIONS``, as ``subprocess`` arguments, with the cluster's
    and the cache's environment."""
    command = [sys.executable, "-m", "nf", "runs", action, "toy", "--profile", "ci", *_options(overrides), *options]
    env = {**slurm.env, "NF_RESULTS_DIR": str(results), "PYTHONPATH": str(REPO)}
    return dict(args=command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _runs(slurm, results: Path, action: str, *options: str, overrides: dict) -> str:
    """The output of ``_command`` run to its end (a failure shows both streams)."""
    done = subprocess.run(**_command(slurm, results, action, *options, overrides=overrides), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _job_ids(output: str) -> list[str]:
    """The job ids in ``submitted 4 jobs: 7_0, 7_1, 7_2, 7_3``."""
    (line,) = [line for line in output.splitlines() if line.startswith("submitted ")]
    return line.split(": ", 1)[1].split(", ")


def _queue(slurm) -> list[tuple[str, str, str]]:
    """``(job id, state, reason)`` of every job in the queue, one per array task."""
    lines = slurm.run("squeue", "-h", "-r", "-o", "%i|%T|%r").splitlines()
    return [tuple(line.split("|")) for line in lines if line]


def _watch(slurm, job_ids: list[str], timeout: float = 600.0, every: float = 0.2) -> list[list[tuple[str, str, str]]]:
    """Poll the queue until none of ``job_ids`` (or their arrays) is in it; the snapshots of those jobs."""
    bases, snapshots = {job.split("_")[0] for job in job_ids}, []
    deadline = time.monotonic() + timeout
    while True:
        ours = [entry for entry in _queue(slurm) if entry[0].split("_")[0] in bases]
        if not ours:
            return snapshots
        snapshots.append(ours)
        assert time.monotonic() < deadline, f"jobs {job_ids} still queued after {timeout:.0f} s: {ours}"
        time.sleep(every)


def _log(results: Path, job_id: str) -> str:
    """A job's submitit logs, ``<results>/.jobs/<id>_0_log.out`` and ``.err``."""
    return "".join((results / ".jobs" / f"{job_id}_0_log.{stream}").read_text() for stream in ("out", "err"))


def _running(snapshot: list[tuple[str, str, str]]) -> int:
    return sum(state == "RUNNING" for _, state, _ in snapshot)


def test_a_profile_is_trained_as_a_job_array_at_most_jobs_at_once(slurm, tmp_path):
    results = tmp_path / "results"
    out = _runs(slurm, results, "train", "--executor", "slurm", "--toy-batch", "1", "--jobs", "1", overrides=SMALL)
    assert "4 runs settled: 4 missing; 4 jobs to submit" in out
    jobs = _job_ids(out)
    assert len(jobs) == 4 and len({job.split("_")[0] for job in jobs}) == 1  # one job array
    snapshots = _watch(slurm, jobs)
    # two CPUs would fit two jobs at once: the array's own limit (--jobs) holds the others back
    assert max(map(_running, snapshots)) == 1
    assert any(reason == "JobArrayTaskLimit" for snapshot in snapshots for _, _, reason in snapshot)
    for job in jobs:
        assert "Job completed successfully" in _log(results, job)
    assert _runs(slurm, results, "status", overrides=SMALL).strip().endswith("4 runs: 4 cached")
    again = _runs(slurm, results, "train", "--executor", "slurm", overrides=SMALL)
    assert "4 runs settled: 4 cached; 0 jobs to submit" in again and "submitted no jobs" in again


def test_two_submissions_of_one_run_at_once_leave_one_good_entry(slurm, tmp_path):
    results, overrides = tmp_path / "results", {**ONE_RUN, "updates": 3000}
    ((_, config),) = chapter_configs("toy", "ci", overrides)
    command = _command(slurm, results, "train", "--executor", "slurm", "--force", overrides=overrides)
    both = [subprocess.Popen(**command) for _ in range(2)]  # --force: the later one may see the run being trained
    outputs = [process.communicate(timeout=300)[0] for process in both]
    jobs = [job for out in outputs for job in _job_ids(out)]
    assert len(set(jobs)) == 2, outputs
    snapshots = _watch(slurm, jobs)
    assert max(map(_running, snapshots)) == 2  # the two jobs ran at once
    for job in jobs:
        assert "Job completed successfully" in _log(results, job)
    key = config_hash("toy", config)
    assert sorted(path.name for path in (results / "toy").iterdir()) == [key]  # no temporary folder, lock, checkpoint
    assert lookup("toy", config, results) is not None  # its checksums hold


def _wait_for_state(slurm, job_id: str, state: str, timeout: float = 60.0) -> None:
    """Poll the queue until ``job_id`` is in ``state``."""
    deadline = time.monotonic() + timeout
    while (job_id, state) not in [(job, found) for job, found, _ in _queue(slurm)]:
        assert time.monotonic() < deadline, f"job {job_id} not {state} after {timeout:.0f} s: {_queue(slurm)}"
        time.sleep(0.2)


def test_queued_runs_are_shown_with_slurms_state_not_submitted_again_and_trained_once_released(slurm, tmp_path):
    results = tmp_path / "results"
    # the whole node busy, so that the jobs wait and can be held before any starts
    blocker = slurm.run("sbatch", "--parsable", "--exclusive", "--output=/dev/null", "--wrap", "sleep 600").strip()
    _wait_for_state(slurm, blocker, "RUNNING")
    out = _runs(slurm, results, "train", "--executor", "slurm", "--toy-batch", "1", overrides=SMALL)
    jobs = _job_ids(out)
    array = jobs[0].split("_")[0]
    slurm.run("scontrol", "uhold", array)  # a user's hold, as a user would
    slurm.run("scancel", blocker)

    lines = _runs(slurm, results, "status", overrides=SMALL).strip().splitlines()
    assert lines[-1] == "4 runs: 4 queued"
    for line, job in zip(lines, jobs):  # one job per run, in the runs' order
        assert line.startswith("queued ") and line.endswith(f"(SLURM PENDING (JobHeldUser), job {job})"), line
    again = _runs(slurm, results, "train", "--executor", "slurm", overrides=SMALL)
    assert "4 runs settled: 4 queued; 0 jobs to submit" in again and "4 queued runs are left alone" in again
    assert "submitted no jobs" in again

    slurm.run("scontrol", "release", array)
    _watch(slurm, jobs)
    assert _runs(slurm, results, "status", overrides=SMALL).strip().endswith("4 runs: 4 cached")
    keys = sorted(config_hash("toy", config) for _, config in chapter_configs("toy", "ci", SMALL))
    assert sorted(path.name for path in (results / "toy").iterdir()) == keys  # each job forgot its record


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """The overrides of one toy run of about ``LONG_SECONDS`` of training on one thread here (timed on a short run
    first), and its uninterrupted twin, trained meanwhile as a local job (``twin()`` waits for it)."""
    threads, seconds = torch.get_num_threads(), []
    torch.set_num_threads(1)
    try:
        for updates in (1000, 3000):  # the difference leaves out the time a run takes besides its updates
            ((_, probe),), start = chapter_configs("toy", "ci", {**ONE_RUN, "updates": updates}), time.perf_counter()
            train_toy(toy_config(**probe), tmp_path_factory.mktemp("probe"))
            seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    seconds_per_update = (seconds[1] - seconds[0]) / 2000
    overrides = {**ONE_RUN, "updates": int(LONG_SECONDS / seconds_per_update) // 1000 * 1000}
    ((_, config),) = chapter_configs("toy", "ci", overrides)
    folder = tmp_path_factory.mktemp("twin")
    (job,) = submit_jobs([("toy", config)], make_executor("local", folder / "jobs"), folder)

    def twin():
        assert job.result() == [config_hash("toy", config)]
        return lookup("toy", config, folder)

    return overrides, config, twin


def _assert_same_numbers(run, twin):
    for name in ("history", "free_energy", "free_energy_se", "kl"):
        assert run.metrics[name] == twin.metrics[name], name
    weights, expected = run.load_tensors("model.pt"), twin.load_tensors("model.pt")
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name


def _state(slurm, results: Path, overrides: dict) -> str:
    """The run's line in ``runs status``: its state and detail."""
    line, _ = _runs(slurm, results, "status", overrides=overrides).strip().splitlines()
    return line


def test_a_cancelled_job_is_submitted_again_at_once_and_resumes_to_the_same_numbers(slurm, tmp_path, long_run):
    overrides, config, twin = long_run
    results = tmp_path / "results"
    executor = make_executor("slurm", results / ".jobs", slurm_parameters(time_minutes=30))
    (job,) = submit_jobs([("toy", config)], executor, results, checkpoint_every=500)
    checkpoint, deadline = checkpoint_path("toy", config, results), time.monotonic() + 300
    while not checkpoint.exists() or load_checkpoint(checkpoint)["step"] < config["updates"] // 4:
        assert time.monotonic() < deadline, f"no checkpoint a quarter of the way after 300 s: {_queue(slurm)}"
        time.sleep(0.5)
    assert _state(slurm, results, overrides).startswith("running ")
    slurm.run("scancel", job.job_id)
    _watch(slurm, [job.job_id])
    assert lookup("toy", config, results) is None, "the run finished before the job was cancelled"
    stopped_at = load_checkpoint(checkpoint)["step"]
    assert _state(slurm, results, overrides).startswith(f"interrupted toy   {config_hash('toy', config)}")

    out = _runs(slurm, results, "train", "--executor", "slurm", overrides=overrides)
    assert "1 run settled: 1 interrupted; 1 job to submit" in out
    (again,) = _job_ids(out)
    _watch(slurm, [again])
    assert "Job completed successfully" in _log(results, again) and 0 < stopped_at < config["updates"]
    _assert_same_numbers(lookup("toy", config, results), twin())
    assert _state(slurm, results, overrides).startswith("cached ")


def test_a_job_at_its_time_limit_saves_is_requeued_and_ends_with_the_same_numbers(slurm, tmp_path, long_run):
    overrides, config, twin = long_run
    results = tmp_path / "results"
    # SLURM signals a job 90 s (submitit's default) before its 3 minutes are up, up to 30 s earlier still
    out = _runs(slurm, results, "train", "--executor", "slurm", "--slurm-time", "3", overrides=overrides)
    (job,) = _job_ids(out)
    snapshots = _watch(slurm, [job])
    log = _log(results, job)
    requeues = log.count("Requeued job")
    assert 1 <= requeues <= 3 and "this job is timed-out" in log, log
    assert "Job completed successfully" in log
    states = [state for snapshot in snapshots for _, state, _ in snapshot]
    assert "PENDING" in states[states.index("RUNNING") :]  # requeued: waiting again after it ran
    _assert_same_numbers(lookup("toy", config, results), twin())
    assert not checkpoint_path("toy", config, results).exists()
