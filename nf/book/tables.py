"""Markdown tables that the chapters display."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..cache import list_runs, results_root
from .profiles import PROFILE_NAMES, PROFILES


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows with the same keys as a Markdown table (the keys are the header)."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def profiles_table() -> str:
    """Every chapter parameter under each profile."""
    rows = []
    for chapter in sorted({name for profile in PROFILES.values() for name in profile}):
        for key in PROFILES["report"][chapter]:
            row = {"chapter": chapter, "parameter": f"`{key}`"}
            row.update({profile: PROFILES[profile][chapter][key] for profile in PROFILE_NAMES})
            rows.append(row)
    return markdown_table(rows)


def runs_table(experiment: str, results_dir: str | None = None) -> str:
    """The cached runs of ``experiment`` grouped by model: how many, total and mean wall time, machine, code versions."""
    groups: dict[str, list] = {}
    for run in list_runs(experiment, results_dir):
        config = run.config
        label = f"{config.get('family', config.get('flow'))} K={config['length']}"
        groups.setdefault(label, []).append(run.provenance)
    rows = []
    for label, provenances in groups.items():
        times = [p["wall_time_seconds"] for p in provenances]
        machines = sorted({f"{p['machine']['machine']}, {p['machine']['cpu_count']} cores" for p in provenances})
        versions = sorted({f"`{p['git_commit'][:10]}`" for p in provenances})
        rows.append({
            "model": label,
            "runs": len(times),
            "total wall time (min)": f"{sum(times) / 60:.1f}",
            "mean per run (s)": f"{sum(times) / len(times):.1f}",
            "machine": "; ".join(machines),
            "code version": " ".join(versions),
        })
    return markdown_table(rows) if rows else f"No cached {experiment} runs yet."


def benchmark_report(results_dir: str | None = None) -> str:
    """The last report of ``benchmarks/flow_update.py --output results/benchmarks/flow_update.txt``."""
    path = results_root(results_dir) / "benchmarks" / "flow_update.txt"
    if path.exists():
        return path.read_text()
    return "No benchmark report yet: run benchmarks/flow_update.py --output results/benchmarks/flow_update.txt"
