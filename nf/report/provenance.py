"""Which runs made a table or a figure: a collapsed note under it, and a CSV of every scored run.

Every cached run records its config, the code version (git commit) that trained it and its wall time
(``nf.runs.cache``); these notes put that record next to the numbers it produced.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from nf.runs.cache import Run, list_runs

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
