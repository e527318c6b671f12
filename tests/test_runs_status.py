"""Where a chapter's runs stand: cached, running (a fresh checkpoint), interrupted (a stale one) or missing."""

from __future__ import annotations

import os
import time

from nf.book.chapter_runs import chapter_configs
from nf.experiments.toy import fit_toys
from nf.runs.cache import checkpoint_path
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
    old = time.time() - 2 * LIVE_SECONDS
    os.utime(stale, (old, old))

    rows = status_rows(runs, tmp_path)
    assert [r["state"] for r in rows] == ["cached", "running", "interrupted", "missing"]
    assert rows[1]["detail"].startswith("update 12 of 30")
    assert status_summary(rows) == "4 runs: 1 cached, 1 running, 1 interrupted, 1 missing"


def test_the_mnist_chapter_lists_its_study_and_its_ladder():
    runs = chapter_configs("mnist", "ci")
    protocols = [config["protocol"] for _, config in runs]
    assert protocols.count("validation") > 0 and protocols.count("test") > 0
    assert chapter_configs("theory", "ci") == []
