"""Which runs made a table or a figure (a collapsed note under it), a CSV of every scored run, the runs trained twice.

Every cached run records its config, the code version (git commit) that trained it and its wall time
(``nf.runs.cache``); these notes put that record next to the numbers it produced.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from nf.runs.cache import Run, list_runs
from nf.runs.recheck import compared, largest, reproduced
from nf.runs.status import describe_run

SUMMARY_KEYS = ("flow", "family", "energy", "length", "seed", "protocol", "updates", "optimizer", "flow_lr_scale")
METRIC_KEYS = ("kl", "free_energy", "test_nll", "test_bound", "test_kl", "validation_nll", "validation_bound")


def _model(run: Run) -> str:
    c = run.config
    return " ".join(f"{k}={c[k]}" for k in SUMMARY_KEYS if k in c)


def training_minutes(run: Run) -> float:
    """Minutes of training: updates times the time per update the trainer measured (across resumes from a
    checkpoint) where the run records it, else the wall time of the process that finished the run."""
    per_update, updates = run.metrics.get("seconds_per_update"), run.config.get("updates")
    if per_update and updates:
        return per_update * updates / 60
    return run.provenance["wall_time_seconds"] / 60


def runs_note(runs: Sequence[Run | None], what: str = "this section") -> str:
    """A collapsed HTML note listing the runs behind ``what``: cache key, model, code version, training time."""
    found = list({run.key: run for run in runs if run is not None}.values())
    if not found:
        return ""
    versions = sorted({run.provenance["git_commit"][:10] for run in found})
    lines = [
        f"<details><summary>The {len(found)} cached runs behind {what} "
        f"(code version{'s' if len(versions) > 1 else ''} {', '.join(versions)})</summary>",
        "",
        "| cache key | run | code version | training time (min) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{run.key}` | {_model(run)} | `{run.provenance['git_commit'][:10]}` | {training_minutes(run):.1f} |"
        for run in found
    ]
    return "\n".join([*lines, "", "</details>"])


def runs_csv(experiments: Sequence[str] = ("toy", "mnist"), results_dir: str | None = None) -> str:
    """Every cached run of ``experiments`` as CSV: key, config, headline metrics, code version, wall time."""
    runs = [run for experiment in experiments for run in list_runs(experiment, results_dir)]
    config_keys = sorted({k for run in runs for k in run.config})
    metric_keys = [k for k in METRIC_KEYS if any(k in run.metrics for run in runs)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["experiment", "key", *config_keys, *metric_keys, "code_version", "wall_time_seconds"])
    for run in runs:
        writer.writerow(
            [run.experiment, run.key]
            + [run.config.get(k, "") for k in config_keys]
            + [run.metrics.get(k, "") for k in metric_keys]
            + [run.provenance["git_commit"], run.provenance["wall_time_seconds"]]
        )
    return out.getvalue()


def recheck_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """One row per stored recheck (``nf.runs.recheck``): the run, both trainings' code versions and dates, the
    largest absolute difference of its per-image test scores and of all it stored, and whether it reproduced."""
    return [
        {
            "cache key": f"`{record['key']}`",
            "run": _described(record),
            "first trained": _training(record["committed"]),
            "trained again": _training(record["retrained"]),
            "largest |Δ|: scores": f"{largest(record, 'scores.pt/'):.3g}" if compared(record, "scores.pt/") else "—",
            "largest |Δ|: all": f"{largest(record):.3g}" if compared(record) else "—",
            "reproduced": "exactly" if reproduced(record) else _not_reproduced(record),
        }
        for record in records
    ]


def _not_reproduced(record: Mapping[str, Any]) -> str:
    if not compared(record):
        return "nothing to compare"
    mismatched = record["mismatched"]
    return f"no ({len(mismatched)} parts mismatched: {', '.join(mismatched)})" if mismatched else "no"


def _described(record: Mapping[str, Any]) -> str:
    """The run as ``runs status`` names it, with its optimiser (the recipes differ in it)."""
    optimizer = record["config"].get("optimizer")
    return describe_run(record["experiment"], record["config"]) + (f", {optimizer}" if optimizer else "")


def _version(commit: str) -> str:
    """A code version as the tables show it: the commit's first 7 characters, and ``+modified`` if so."""
    return commit[:7] + ("+modified" if commit.endswith("+modified") else "")


def _training(provenance: Mapping[str, Any]) -> str:
    return f"`{_version(provenance['git_commit'])}`, {provenance['created'][:10]}"


def recheck_reading(records: Sequence[Mapping[str, Any]]) -> str:
    """How many rechecked runs reproduce what they stored exactly, over how many compared values (Markdown)."""
    if not records:
        return "No run has been trained a second time yet."
    exact = sum(reproduced(r) for r in records)
    other = sum(r["committed"]["git_commit"] != r["retrained"]["git_commit"] for r in records)
    scores, values = sum(compared(r, "scores.pt/") for r in records), sum(compared(r) for r in records)
    unmatched = sum(len(r["unmatched"]) for r in records)
    if len(records) == 1:
        runs, versions = "One run has", "by another code version" if other else "by the same code version"
        verdict = "it reproduces" if exact else "it does not reproduce"
    else:
        runs, versions = f"{len(records)} runs have", f"{other} of them by another code version"
        verdict = "every one reproduces" if exact == len(records) else f"{exact} of them reproduce"
    verdict += " every value it stored the first time exactly"
    if 1 < len(records) != exact:
        verdict += f", {len(records) - exact} do not (table)"
    return (
        f"{runs} been trained a second time from scratch ({versions}): {verdict}. "
        f"Compared: {values:,} stored values, {scores:,} of them per-image test scores (timings left out"
        + (f"; {unmatched} parts stored by one training only, not compared" if unmatched else "")
        + ")."
    )
