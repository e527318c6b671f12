"""Markdown tables that the chapters display."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..cache import list_runs
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


def toy_runs_table(results_dir: str | None = None) -> str:
    """The cached toy runs with their wall time, machine and code version."""
    rows = []
    for run in list_runs("toy", results_dir):
        config, provenance, machine = run.config, run.provenance, run.provenance["machine"]
        rows.append({
            "run": f"{config['energy']} {config['family']} K={config['length']}, {config['updates']} updates",
            "wall time (s)": f"{provenance['wall_time_seconds']:.1f}",
            "machine": f"{machine['machine']}, {machine['cpu_count']} cores",
            "code version": f"`{provenance['git_commit'][:10]}`",
        })
    return markdown_table(rows) if rows else "No cached toy runs yet."
