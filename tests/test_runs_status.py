"""Where a chapter's runs stand: cached, running (a fresh checkpoint), interrupted (a stale one) or missing."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

from nf.book.chapter_runs import chapter_configs
from nf.experiments.toy import fit_toys
from nf.runs.cache import _host, checkpoint_path, config_hash
from nf.runs.checkpoint import save_atomically
from nf.runs.status import LIVE_SECONDS, status_rows, status_summary

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
    assert chapter_configs("theory", "ci") == []
