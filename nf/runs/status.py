"""Where each run of a set stands: cached, being trained now, queued (held by a job that has not started it),
interrupted (a checkpoint left behind), or missing.

A run being trained holds its lock and a temporary folder named after its machine and process
(``nf.runs.cache``) and saves its checkpoint at ``<results>/<experiment>/.<key>.checkpoint.pt`` every few
minutes (``nf.runs.checkpoint``).  It is *running* while a live process holds its lock, which the operating
system releases when the process ends: a killed or cancelled job's run is *interrupted* at once, and resumes
when the same run is asked for again.  A run held by another machine (a results folder shared by cluster
nodes), whose process cannot be checked from here, counts as running while its checkpoint is younger than
``LIVE_SECONDS``.

A submitted job records itself beside each of its runs (``record_job``: ``.<key>.job``, with the scheduler, the
job id, the host and the time) and forgets the run once it is cached (``forget_job``).  A run that is not running
is *queued* while its recorded job is still to run it: a SLURM job that ``squeue`` shows in one of
``SCHEDULED_STATES`` (pending, configuring, requeued, ... or running but not yet at this run: the runs before it
in its batch, or its start-up), or a local job whose process on this machine is alive.  A job the scheduler no
longer knows (finished or cancelled) is ignored, and where there is no ``squeue`` (or it does not answer) a SLURM
job is unknown: the run's state comes from its files and lock alone.  The scheduler's own state is shown in the
run's detail wherever there is one (``SLURM PENDING (Priority), job 123_4``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nf.runs.atomic import write_atomically
from nf.runs.cache import (
    _host,
    _pid_alive,
    checkpoint_path,
    config_hash,
    held_elsewhere,
    lookup,
    results_root,
    run_is_locked,
)
from nf.runs.checkpoint import UnreadableCheckpoint, load_checkpoint
from nf.validation import check_choice

# a few checkpoint intervals: 2-3 minutes in training, 5 in a gap analysis (its fits and its estimates alike)
LIVE_SECONDS = 600.0
STATES = ("cached", "running", "queued", "interrupted", "missing")
SCHEDULERS = ("slurm", "local")
# SLURM job states in which the job will still run its runs, or runs them now
SCHEDULED_STATES = (
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SUSPENDED",
    "RUNNING",
)
SQUEUE_SECONDS = 30.0  # a controller that does not answer by then counts as no SLURM

Runs = Sequence[tuple[str, Mapping[str, Any]]]


def job_record_path(experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None) -> Path:
    """Where the job that holds the run of ``config`` is recorded: ``<results>/<experiment>/.<key>.job``."""
    return results_root(results_dir) / experiment / f".{config_hash(experiment, config)}.job"


def record_job(
    experiment: str,
    config: Mapping[str, Any],
    scheduler: str,
    job_id: str,
    results_dir: str | os.PathLike | None = None,
) -> None:
    """Record, atomically, that the job ``job_id`` of ``scheduler`` (``slurm``, or ``local``: its process id on this
    machine) is to train the run of ``config``, replacing an earlier record."""
    check_choice("scheduler", scheduler, SCHEDULERS)
    path = job_record_path(experiment, config, results_dir)
    record = {"scheduler": scheduler, "job": job_id, "host": _host(), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    text = json.dumps(record).encode()
    write_atomically(path, lambda f: f.write(text), prefix=f"{path.name}-", suffix="")  # not ".tmp": not a run's folder


def recorded_job(
    experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None
) -> dict[str, str] | None:
    """The record of the job that holds the run of ``config`` (``record_job``), or None if there is none or it
    cannot be read."""
    try:
        with open(job_record_path(experiment, config, results_dir)) as f:
            record = json.load(f)
        return record if record["scheduler"] in SCHEDULERS and isinstance(record["job"], str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_job(experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None) -> None:
    """Remove the run's job record (its run is cached: no job holds it any more)."""
    job_record_path(experiment, config, results_dir).unlink(missing_ok=True)


@dataclass(frozen=True)
class JobState:
    """What the scheduler says of a run's recorded job: its state (SLURM's own; a local job's is ``RUNNING``)."""

    scheduler: str
    job: str
    state: str
    reason: str = ""

    @property
    def scheduled(self) -> bool:
        """Whether the job is still to run its runs, or runs them now."""
        return self.state in SCHEDULED_STATES

    def __str__(self) -> str:
        if self.scheduler == "local":
            return f"local job {self.job}"
        reason = f" ({self.reason})" if self.reason not in ("", "None") else ""
        return f"SLURM {self.state}{reason}, job {self.job}"


def slurm_queue(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """SLURM's ``(state, reason)`` of each of ``job_ids`` that it still knows (``123`` or an array task ``123_4``),
    from one ``squeue`` call; ``{}`` where there is no ``squeue`` or it does not answer."""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    command = ["squeue", "-h", "-r", "-j", ",".join(sorted(set(job_ids))), "-o", "%i|%T|%r"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SQUEUE_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode:  # no controller, or (one id alone) a job it no longer knows
        return {}
    fields = [line.split("|") for line in done.stdout.splitlines()]
    return {parts[0]: (parts[1], parts[2]) for parts in fields if len(parts) == 3}


def job_states(records: Sequence[Mapping[str, str] | None]) -> list[JobState | None]:
    """The scheduler's state of each recorded job (None: no record, or a job the scheduler does not know: ended,
    cancelled, another machine's local job, or SLURM not answering); one ``squeue`` call for them all."""
    slurm = [record["job"] for record in records if record is not None and record["scheduler"] == "slurm"]
    queue = slurm_queue(slurm)
    states: list[JobState | None] = []
    for record in records:
        if record is None:
            states.append(None)
        elif record["scheduler"] == "slurm":
            found = queue.get(record["job"])
            states.append(None if found is None else JobState("slurm", record["job"], *found))
        else:
            alive = record.get("host") == _host() and record["job"].isdigit() and _pid_alive(int(record["job"]))
            states.append(JobState("local", record["job"], "RUNNING") if alive else None)
    return states


def run_states(
    runs: Runs, results_dir: str | os.PathLike | None = None, now: float | None = None
) -> list[tuple[str, str]]:
    """``(state, detail)`` of each run (module docstring), asking the scheduler once about their recorded jobs."""
    cached = [lookup(experiment, config, results_dir) is not None for experiment, config in runs]
    records = [None if hit else recorded_job(e, c, results_dir) for (e, c), hit in zip(runs, cached)]
    return [
        ("cached", "") if hit else _run_state(experiment, config, job, results_dir, now)
        for (experiment, config), hit, job in zip(runs, cached, job_states(records))
    ]


def run_state(
    experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None, now: float | None = None
) -> tuple[str, str]:
    """``(state, detail)`` of one run: ``cached``, ``running``, ``queued`` or ``interrupted`` (with the checkpoint's
    update count and age, and the scheduler's state of the run's job), or ``missing``."""
    return run_states([(experiment, config)], results_dir, now)[0]


def _run_state(
    experiment: str,
    config: Mapping[str, Any],
    job: JobState | None,
    results_dir: str | os.PathLike | None,
    now: float | None,
) -> tuple[str, str]:
    """The state of a run that is not cached, from its files and lock; ``queued`` instead of interrupted or missing
    while ``job`` is scheduled; the job's state after the detail."""
    state, detail = _state_from_files(experiment, config, results_dir, now)
    if job is None:
        return state, detail
    if state != "running" and job.scheduled:
        return "queued", "; ".join(filter(None, [str(job), detail]))
    return state, "; ".join(filter(None, [detail, str(job)]))


def _state_from_files(
    experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None, now: float | None
) -> tuple[str, str]:
    """``(state, detail)`` of a run that is not cached, from its lock and its checkpoint alone: ``running``,
    ``interrupted`` or ``missing``."""
    checkpoint = checkpoint_path(experiment, config, results_dir)
    here = run_is_locked(experiment, config, results_dir)
    try:
        state = load_checkpoint(checkpoint, mapped=True)  # its step or progress line only
    except UnreadableCheckpoint:
        return "interrupted", "checkpoint cannot be read: it will be moved aside and the run started over"
    if state is None:
        return ("running", "started, no checkpoint yet") if here else ("missing", "")
    age = (time.time() if now is None else now) - checkpoint.stat().st_mtime
    progress = state.get("progress") or f"update {state['step']:,} of {config['updates']:,}"  # a gaps analysis: its own
    detail = f"{progress}, checkpoint {age / 60:.0f} min old"
    running = here or (age <= LIVE_SECONDS and held_elsewhere(experiment, config, results_dir))
    return ("running" if running else "interrupted"), detail


def status_rows(runs: Runs, results_dir: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """One row per ``(experiment, config)``: its cache key, a short description, its state and detail."""
    rows = []
    for (experiment, config), (state, detail) in zip(runs, run_states(runs, results_dir)):
        rows.append(
            {
                "experiment": experiment,
                "key": config_hash(experiment, config),
                "run": describe_run(experiment, config),
                "state": state,
                "detail": detail,
            }
        )
    return rows


def describe_run(experiment: str, config: Mapping[str, Any]) -> str:
    """A run in a few words: ``planar K=20, test, seed 0, 100,000 updates`` (``, identity start`` where the flow
    starts at the identity); an analysis of a run (``gaps``): ``gaps of <the run>, 1,000 images, fit of 2 cuts in
    100-step chunks`` (its local fit: the cuts of the step size, and the steps between checks)."""
    if experiment == "gaps":
        fit = config["fit"]
        return (
            f"gaps of {describe_run('mnist', config['run'])}, {config['images']:,} images, "
            f"fit of {fit['rate_cuts']} cuts in {fit['check_every']}-step chunks"
        )
    model = f"{config.get('family', config.get('flow'))} K={config['length']}"
    where = config.get("energy") or config.get("protocol", "quick")
    start = ", identity start" if config.get("flow_start") == "identity" else ""
    return f"{model}, {where}, seed {config['seed']}, {config['updates']:,} updates{start}"


def status_summary(rows: Sequence[Mapping[str, str]]) -> str:
    """``"12 runs: 3 cached, 1 running, 2 queued, 6 missing"``."""
    counts = [(s, sum(r["state"] == s for r in rows)) for s in STATES]
    return f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts if n)
