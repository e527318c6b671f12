"""Where each run of a set stands: cached, being trained now, interrupted (a checkpoint left behind), or missing.

A run being trained holds its lock and a temporary folder named after its machine and process
(``nf.runs.cache``) and saves its checkpoint at ``<results>/<experiment>/.<key>.checkpoint.pt`` every few
minutes (``nf.runs.checkpoint``).  It is *running* while a live process holds its lock, which the operating
system releases when the process ends: a killed or cancelled job's run is *interrupted* at once, and resumes
when the same run is asked for again.  A run held by another machine (a results folder shared by cluster
nodes), whose process cannot be checked from here, counts as running while its checkpoint is younger than
``LIVE_SECONDS``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from nf.runs.cache import checkpoint_path, config_hash, held_elsewhere, lookup, run_is_locked
from nf.runs.checkpoint import UnreadableCheckpoint, load_checkpoint

LIVE_SECONDS = 600.0  # a few checkpoint intervals (2-3 minutes each)
STATES = ("cached", "running", "interrupted", "missing")


def run_state(
    experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None, now: float | None = None
) -> tuple[str, str]:
    """``(state, detail)`` of one run: ``cached``, ``running`` or ``interrupted`` (with the checkpoint's update
    count and age), or ``missing``."""
    if lookup(experiment, config, results_dir) is not None:
        return "cached", ""
    checkpoint = checkpoint_path(experiment, config, results_dir)
    here = run_is_locked(experiment, config, results_dir)
    try:
        state = load_checkpoint(checkpoint)
    except UnreadableCheckpoint:
        return "interrupted", "checkpoint cannot be read: it will be moved aside and the run started over"
    if state is None:
        return ("running", "started, no checkpoint yet") if here else ("missing", "")
    age = (time.time() if now is None else now) - checkpoint.stat().st_mtime
    detail = f"update {state['step']:,} of {config['updates']:,}, checkpoint {age / 60:.0f} min old"
    running = here or (age <= LIVE_SECONDS and held_elsewhere(experiment, config, results_dir))
    return ("running" if running else "interrupted"), detail


def status_rows(
    runs: Sequence[tuple[str, Mapping[str, Any]]], results_dir: str | os.PathLike | None = None
) -> list[dict[str, str]]:
    """One row per ``(experiment, config)``: its cache key, a short description, its state and detail."""
    rows = []
    for experiment, config in runs:
        state, detail = run_state(experiment, config, results_dir)
        model = f"{config.get('family', config.get('flow'))} K={config['length']}"
        where = config.get("energy") or config.get("protocol", "quick")
        rows.append(
            {
                "experiment": experiment,
                "key": config_hash(experiment, config),
                "run": f"{model}, {where}, seed {config['seed']}, {config['updates']:,} updates",
                "state": state,
                "detail": detail,
            }
        )
    return rows


def status_summary(rows: Sequence[Mapping[str, str]]) -> str:
    """``"12 runs: 3 cached, 1 running, 8 missing"``."""
    counts = [(s, sum(r["state"] == s for r in rows)) for s in STATES]
    return f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts if n)
