"""Where a chapter's runs stand: cached, running (a live lock or a fresh checkpoint), queued (a scheduled job, with a
fake ``squeue``), interrupted (a stale checkpoint) or missing."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import pytest

from nf.book.chapter_runs import chapter_configs
from nf.experiments.jobs import TrainRuns, runs_to_submit
from nf.experiments.toy import fit_toys
from nf.runs.cache import _host, checkpoint_path, config_hash
from nf.runs.checkpoint import save_atomically
from nf.runs.status import (
    LIVE_SECONDS,
    job_record_path,
    record_job,
    recorded_job,
    run_state,
    slurm_queue,
    status_rows,
    status_summary,
)

SMALL = {"updates": 30, "anneal_updates": 10, "batch_size": 8, "eval_samples": 50}


def test_status_follows_the_cache_and_the_checkpoints(tmp_path):
    runs = chapter_configs("toy", "ci", SMALL)
    assert {experiment for experiment, _ in runs} == {"toy"} and len(runs) == 4
    assert status_summary(status_rows(runs, tmp_path)) == "4 runs: 4 missing"

    fit_toys([runs[0][1]], tmp_path, workers=1)
    live, stale = (checkpoint_path("toy", config, tmp_path) for _, config in runs[1:3])
    for path in (live, stale):
        save_atomically({"step": 12}, path)
    lock = _lock(tmp_path, runs[1][1])  # this process trains run 1
    old = time.time() - 2 * LIVE_SECONDS
    os.utime(stale, (old, old))

    rows = status_rows(runs, tmp_path)
    assert [r["state"] for r in rows] == ["cached", "running", "interrupted", "missing"]
    assert rows[1]["detail"].startswith("update 12 of 30")
    assert status_summary(rows) == "4 runs: 1 cached, 1 running, 1 interrupted, 1 missing"
    lock.close()


def test_an_analysis_being_made_shows_how_far_it_is(tmp_path):
    runs = chapter_configs("gaps", "ci")[:1]
    progress = "decoder's planar fit at step 1,200"  # as nf.experiments.gaps saves it
    save_atomically({"fits": {}, "progress": progress}, checkpoint_path("gaps", runs[0][1], tmp_path))
    [row] = status_rows(runs, tmp_path)
    assert row["state"] == "interrupted" and row["detail"].startswith(f"{progress}, checkpoint 0 min old")


def _lock(results, config):
    """The run's lock held, as ``cached_run`` holds it while it trains (released when the file is closed)."""
    f = open(results / "toy" / f".{config_hash('toy', config)}.lock", "a+")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def _hold(results, config, host, pid):
    """A temporary run folder as ``store_run`` names it: the run is being trained by ``pid`` on ``host``."""
    key = config_hash("toy", config)
    (results / "toy" / f".{key}.{host}.{pid}.abc123.tmp").mkdir(parents=True)


def test_a_cancelled_run_is_interrupted_at_once_and_another_machines_run_by_its_checkpoints_age(tmp_path):
    """A run whose process here is dead (a cancelled job) is interrupted however fresh its checkpoint; a run of
    another machine, whose process cannot be checked, is running while its checkpoint is fresh."""
    runs = chapter_configs("toy", "ci", SMALL)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cancelled, other, other_stale, starting = (config for _, config in runs)
    for config in (cancelled, other, other_stale):
        save_atomically({"step": 12}, checkpoint_path("toy", config, tmp_path))
    old = time.time() - 2 * LIVE_SECONDS
    os.utime(checkpoint_path("toy", other_stale, tmp_path), (old, old))
    _hold(tmp_path, cancelled, _host(), dead.pid)
    _hold(tmp_path, other, "node-7", 4242)
    _hold(tmp_path, other_stale, "node-7", 4243)
    lock = _lock(tmp_path, starting)
    rows = status_rows(runs, tmp_path)
    assert [r["state"] for r in rows] == ["interrupted", "running", "interrupted", "running"]
    assert rows[3]["detail"] == "started, no checkpoint yet"
    lock.close()


def test_the_mnist_chapter_lists_its_study_and_its_ladder():
    runs = chapter_configs("mnist", "ci")
    protocols = [config["protocol"] for _, config in runs]
    assert protocols.count("validation") > 0 and protocols.count("test") > 0
    checks = [c for _, c in runs if c["protocol"] == "validation" and c.get("flow_start") == "identity"]
    assert [(c["flow"], c["length"]) for c in checks] == [("planar", 20)]  # the study's start check
    assert chapter_configs("theory", "ci") == []


def _fake_squeue(monkeypatch, queue: dict[str, tuple[str, str]]) -> list[list[str]]:
    """``nf.runs.status.slurm_queue`` answering from ``queue`` (job id -> SLURM state and reason); the ids it is
    asked about, one list per call."""
    calls: list[list[str]] = []

    def slurm_queue(job_ids):
        calls.append(sorted(job_ids))
        return {job: queue[job] for job in job_ids if job in queue}

    monkeypatch.setattr("nf.runs.status.slurm_queue", slurm_queue)
    return calls


def test_a_run_whose_slurm_job_is_still_to_run_it_is_queued_with_slurms_state(tmp_path, monkeypatch):
    """Pending, requeued or running but not yet at the run: queued; running and holding the run's lock: running; a
    job SLURM no longer knows, or one that is ending: the run's files decide."""
    runs = chapter_configs("toy", "ci", {**SMALL, "seeds": [0, 1, 2]})
    assert len(runs) == 12
    queue = {
        "7_0": ("PENDING", "Priority"),
        "7_1": ("REQUEUED", "None"),
        "7_2": ("RUNNING", "None"),
        "7_3": ("RUNNING", "None"),
        "8": ("PENDING", "JobHeldUser"),
        "9": ("COMPLETING", "None"),
    }
    calls = _fake_squeue(monkeypatch, queue)
    jobs = ["7_0", "7_1", "7_2", "7_3", "8", "9", "10", None, "11", None, None, None]
    for (_, config), job in zip(runs, jobs):
        if job is not None:
            record_job("toy", config, "slurm", job, tmp_path)
    for _, config in (runs[1], runs[5], runs[7]):  # interrupted earlier, each with a stale checkpoint
        save_atomically({"step": 12}, checkpoint_path("toy", config, tmp_path))
        old = time.time() - 2 * LIVE_SECONDS
        os.utime(checkpoint_path("toy", config, tmp_path), (old, old))
    lock = _lock(tmp_path, runs[3][1])  # job 7_3 trains its run now
    fit_toys([runs[8][1]], tmp_path, workers=1)  # cached (by anyone) while its job 11 is recorded: the record is moot

    rows = status_rows(runs, tmp_path)
    assert calls == [sorted(job for job in jobs[:7] if job)]  # one squeue call, for every run not cached
    states = ["queued"] * 3 + ["running", "queued", "interrupted", "missing", "interrupted", "cached"] + ["missing"] * 3
    assert [r["state"] for r in rows] == states
    assert rows[0]["detail"] == "SLURM PENDING (Priority), job 7_0"
    assert rows[1]["detail"] == "SLURM REQUEUED, job 7_1; update 12 of 30, checkpoint 20 min old"
    assert rows[2]["detail"] == "SLURM RUNNING, job 7_2"  # its job runs, but has not reached it yet
    assert rows[3]["detail"] == "started, no checkpoint yet; SLURM RUNNING, job 7_3"
    assert rows[4]["detail"] == "SLURM PENDING (JobHeldUser), job 8"
    assert rows[5]["detail"] == "update 12 of 30, checkpoint 20 min old; SLURM COMPLETING, job 9"
    assert rows[6]["detail"] == "" and rows[7]["detail"] == "update 12 of 30, checkpoint 20 min old"
    assert status_summary(rows) == "12 runs: 1 cached, 1 running, 4 queued, 2 interrupted, 4 missing"
    lock.close()


def test_a_local_jobs_runs_are_queued_while_its_process_lives(tmp_path, monkeypatch):
    calls = _fake_squeue(monkeypatch, {})
    runs = chapter_configs("toy", "ci", SMALL)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record_job("toy", runs[0][1], "local", str(os.getpid()), tmp_path)  # a live process of this machine
    record_job("toy", runs[1][1], "local", str(dead.pid), tmp_path)
    record_job("toy", runs[2][1], "local", str(os.getpid()), tmp_path)
    record = job_record_path("toy", runs[2][1], tmp_path)
    record.write_text(record.read_text().replace(_host(), "node-7"))  # another machine's: cannot be checked
    job_record_path("toy", runs[3][1], tmp_path).write_text("{not json")  # unreadable: ignored
    rows = status_rows(runs, tmp_path)
    assert [(r["state"], r["detail"]) for r in rows] == [("queued", f"local job {os.getpid()}")] + [("missing", "")] * 3
    assert calls == [[]]  # no SLURM job recorded: squeue is not asked about any


def test_queued_runs_are_not_submitted_again_unless_forced(tmp_path, monkeypatch):
    _fake_squeue(monkeypatch, {"7_0": ("PENDING", "Resources")})
    runs = chapter_configs("toy", "ci", SMALL)
    record_job("toy", runs[0][1], "slurm", "7_0", tmp_path)
    record_job("toy", runs[1][1], "slurm", "6_0", tmp_path)  # a job that has ended
    assert runs_to_submit(runs, results_dir=tmp_path) == (runs[1:], ["queued", "missing", "missing", "missing"])
    assert runs_to_submit(runs, force=True, results_dir=tmp_path)[0] == runs
    TrainRuns(str(tmp_path))([runs[0]])  # what the job does: trains the run and forgets its record
    assert run_state(*runs[0], tmp_path) == ("cached", "") and recorded_job(*runs[0], tmp_path) is None


def test_without_slurm_the_queue_is_empty(tmp_path, monkeypatch):
    (tmp_path / "slurm.conf").write_text("")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))  # squeue finds no cluster: it fails at once
    assert slurm_queue(["7_0", "8"]) == {}
    monkeypatch.setenv("PATH", "")  # no squeue at all
    assert slurm_queue(["7_0", "8"]) == {}


def test_a_bad_scheduler_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown scheduler 'pbs'; choose one of slurm, local"):
        record_job("toy", {"seed": 0}, "pbs", "7", tmp_path)
