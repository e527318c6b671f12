"""Markdown tables: the generic ``markdown_table`` and the compute appendix's (profiles, runs, benchmark, scale)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from nf.runs.cache import Run, list_runs, results_root

PAGE_WIDTH = 84  # characters of code or text output a page shows without scrolling


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows with the same keys as a Markdown table (keys as the header, ``|`` escaped); a note if there are no rows.
    In the body a value and its error (``a ± b``) are joined by non-breaking spaces, so a narrow column never splits
    them over lines."""
    if not rows:
        return "*(no runs for this table under this profile)*"
    header = list(rows[0])

    def cells(values) -> str:  # a bare | would end the cell: escape it
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    lines = [cells(header), "|" + "---|" * len(header)]
    lines += [cells(str(row[key]).replace(" ± ", "\u00a0±\u00a0") for key in header) for row in rows]
    return "\n".join(lines)


def _flat(parameters: dict[str, Any]) -> dict[str, Any]:
    """``{"toy": {"updates": 1}}`` -> ``{"toy.updates": 1}`` (chapters with a toy and an MNIST part)."""
    flat = {}
    for key, value in parameters.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _readable(value: Any) -> str:
    """A parameter value as short text for a table cell: models ``[flow, K]`` as ``flow K``, other lists and
    dictionaries without brackets and quotes (a nested dictionary in parentheses), an empty list as ``none``."""
    if isinstance(value, dict):
        return "; ".join(
            f"{k}: ({_readable(v)})" if isinstance(v, dict) else f"{k}: {_readable(v)}" for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        if all(isinstance(item, (list, tuple)) for item in value):
            return ", ".join(" ".join(str(x) for x in item) for item in value)
        return ", ".join(_readable(item) for item in value)
    return str(value)


def profiles_table(profiles: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Every chapter parameter under each profile (``nf.book.profiles.PROFILES``: profile -> chapter -> parameters)."""
    rows = []
    for chapter in sorted({name for profile in profiles.values() for name in profile}):
        values = {profile: _flat(profiles[profile][chapter]) for profile in profiles}
        for key in values["report"]:
            row = {"chapter": chapter, "parameter": f"`{key}`"}
            row.update({profile: _readable(values[profile][key]) for profile in profiles})
            rows.append(row)
    return markdown_table(rows)


def _runs_by_model(experiment: str, results_dir: str | None) -> list[tuple[str, list]]:
    """Cached runs of ``experiment`` grouped by flow family and length, as ``(label, runs)`` in sorted order."""
    groups: dict[tuple[str, str, int, str], list] = {}
    for run in list_runs(experiment, results_dir):
        config = run.config
        protocol = f"{config.get('protocol', 'quick')}: " if experiment == "mnist" else ""
        start = ", identity start" if config.get("flow_start") == "identity" else ""
        groups.setdefault((protocol, config.get("family", config.get("flow")), config["length"], start), []).append(run)
    return [
        (f"{protocol}{family} K={length}{start}", runs)
        for (protocol, family, length, start), runs in sorted(groups.items())
    ]


def training_seconds(run: Run) -> float:
    """The time a run spent training, as its trainer measured it across interruptions and resumes.

    (The wall time in ``provenance.json`` covers only the process that finished the run.)
    """
    m = run.metrics
    if "seconds_per_update" in m:
        return m["seconds_per_update"] * run.config["updates"]
    return m["seconds_per_1000_updates"] * run.config["updates"] / 1000


def runs_table(experiment: str, results_dir: str | None = None) -> str:
    """The cached runs of ``experiment`` grouped by model (and, for MNIST, protocol: ``quick``, ``validation`` or
    ``test``, see ``nf.experiments.mnist``): how many, total and mean training time, machine, code versions."""
    rows = []
    for label, runs in _runs_by_model(experiment, results_dir):
        provenances = [run.provenance for run in runs]
        times = [training_seconds(run) for run in runs]
        machines = sorted({f"{p['machine']['machine']}, {p['machine']['cpu_count']} cores" for p in provenances})
        versions = sorted({f"`{p['git_commit'][:10]}`" for p in provenances})
        rows.append(
            {
                "model": label,
                "runs": len(times),
                "total training time (min)": f"{sum(times) / 60:.1f}",
                "mean per run (s)": f"{sum(times) / len(times):.1f}",
                "machine": "; ".join(machines),
                "code version": " ".join(versions),
            }
        )
    return markdown_table(rows) if rows else f"No cached {experiment} runs yet."


def analyses_table(results_dir: str | None = None) -> str:
    """The cached gap analyses (``nf.experiments.gaps``) grouped by the model they analyse: how many, how many of
    them on 1,000 images or more (the rest are convergence checks on the first images), their total and longest
    time (a resumed analysis's earlier processes counted up to their last save), code versions; a last row sums them
    in core-hours."""
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for run in list_runs("gaps", results_dir):
        analysed = run.config["run"]
        recipe = "paper's" if analysed["optimizer"] == "rmsprop" else "ours"
        groups.setdefault((recipe, analysed["flow"], analysed["length"]), []).append(run)
    order = {"none": 0, "planar": 1}  # the diagonal model, planar flows, then the others

    def place(group: tuple[str, str, int]) -> tuple[bool, int, str, int]:
        recipe, flow, length = group
        return recipe != "ours", order.get(flow, 2), flow, length

    rows = []
    for (recipe, flow, length), runs in sorted(groups.items(), key=lambda item: place(item[0])):
        minutes = [run.metrics["seconds"] / 60 for run in runs]
        rows.append(
            {
                "model": f"{flow} K={length}",
                "recipe": recipe,
                "analyses": len(runs),
                "on ≥ 1,000 images": sum(run.config["images"] >= 1000 for run in runs),
                "total time (min)": f"{sum(minutes):.1f}",
                "longest (min)": f"{max(minutes):.1f}",
                "code version": " ".join(sorted({f"`{run.provenance['git_commit'][:10]}`" for run in runs})),
            }
        )
    if not rows:
        return "No cached gap analyses yet."
    minutes = sum(run.metrics["seconds"] for runs in groups.values() for run in runs) / 60
    total = {key: "" for key in rows[0]}
    total.update(model=f"all: {minutes / 60:.1f} core-hours", analyses=sum(row["analyses"] for row in rows))
    total.update({"on ≥ 1,000 images": sum(row["on ≥ 1,000 images"] for row in rows)})
    total["total time (min)"] = f"{minutes:.1f}"
    return markdown_table([*rows, total])


def _wrapped(line: str) -> str:
    """A report line wrapped to the page's code width: between its `` | ``-separated entries where it has them, so
    that no entry is split, else between words; continuation lines indented."""
    if len(line) <= PAGE_WIDTH or " | " not in line:
        return textwrap.fill(line, PAGE_WIDTH, subsequent_indent="    ") if line else line
    lines, current = [], ""
    for entry in line.split(" | "):
        if current and len(current) + len(" | ") + len(entry) > PAGE_WIDTH:
            lines.append(f"{current} |")
            current = f"    {entry}"
        else:
            current = f"{current} | {entry}" if current else entry
    return "\n".join([*lines, current])


def benchmark_report(results_dir: str | None = None) -> str:
    """The last report of ``benchmarks/flow_update.py --output results/benchmarks/flow_update.txt``."""
    path = results_root(results_dir) / "benchmarks" / "flow_update.txt"
    if path.exists():
        return "\n".join(_wrapped(line) for line in path.read_text().splitlines())
    return "No benchmark report yet: run benchmarks/flow_update.py --output results/benchmarks/flow_update.txt"


def paper_scale_table(paper_updates: dict[str, int], results_dir: str | None = None) -> str:
    """Time one run would take at the paper's number of updates (``paper_updates``: experiment -> updates),
    extrapolated from the measured time per update here."""
    rows = []
    for experiment in ("toy", "mnist"):
        updates = paper_updates[experiment]
        for label, runs in _runs_by_model(experiment, results_dir):
            seconds = [training_seconds(run) / run.config["updates"] for run in runs]
            hours = sum(seconds) / len(seconds) * updates / 3600
            rows.append(
                {
                    "run": f"{experiment}: {label}",
                    "paper updates": f"{updates:,}",
                    "hours per run on this CPU": f"{hours:.1f}",
                }
            )
    return markdown_table(rows) if rows else "No cached runs yet."


PEER_COLUMNS = {  # the peers block's columns (benchmarks/flow_update.py --peers) -> the compute appendix's headers
    "update": "update",
    "flow": "flow",
    "K": "K",
    "ours/K0": "ours / K=0",
    "ours/s": "ours, updates/s",
    "ours": "ours",
    "plain": "ours layer by layer",
    "pyro": "Pyro",
    "normflows": "normflows",
    "zuko": "zuko",
}


def peer_rows(report: str) -> list[dict[str, str]]:
    """The peers block of a ``benchmarks/flow_update.py --peers`` report as rows for ``markdown_table``: per update
    (the DLGM's, the toy fit's), flow and K, each library's time per update relative to ours (ours = 1.00), ours
    against K = 0 and in updates per second; ``-`` where a library has no such flow, ``differs`` where it failed its
    equivalence check, ``absent`` where it was not installed.  No rows if the report has no peers block.

    The block is the ``peers:`` lines: a header naming the columns, then one line per row."""
    lines = [line.removeprefix("peers:").split() for line in report.splitlines() if line.startswith("peers:")]
    header = next((cells for cells in lines if cells[:2] == ["update", "flow"]), None)
    if header is None:
        return []
    unknown = [name for name in header if name not in PEER_COLUMNS]
    if unknown:
        raise ValueError(f"the report's peers block has columns this table does not know: {unknown}")
    rows = [cells for cells in lines if len(cells) == len(header) and cells != header]
    return [{PEER_COLUMNS[name]: value for name, value in zip(header, cells)} for cells in rows]


def peer_versions(report: str) -> str:
    """The ``peer versions:`` line of a report (torch and each peer's version), without its label; empty if none."""
    for line in report.splitlines():
        if line.startswith("peer versions:"):
            return line.removeprefix("peer versions:").strip()
    return ""


def peers_table(results_dir: str | None = None) -> str:
    """The committed benchmark report's peers block (``peer_rows``) as a Markdown table, with the versions timed."""
    path = results_root(results_dir) / "benchmarks" / "flow_update.txt"
    rows = peer_rows(path.read_text()) if path.exists() else []
    if not rows:
        return "No peers in the benchmark report yet: run benchmarks/flow_update.py --peers (see its docstring)."
    versions = peer_versions(path.read_text())
    ratios = [{k: v for k, v in row.items() if k != PEER_COLUMNS["ours/s"]} for row in rows]  # ratios only
    return markdown_table(ratios) + (f"\n\nVersions: {versions}." if versions else "")


def peers_reading(results_dir: str | None = None) -> str:
    """One sentence per update kind of the committed report's peers block: at each flow's longest K, each peer's
    time per update as a multiple of ours (``peer_rows``; a peer that failed its check or is absent is named so)."""
    path = results_root(results_dir) / "benchmarks" / "flow_update.txt"
    rows = peer_rows(path.read_text()) if path.exists() else []
    peers = [PEER_COLUMNS[name] for name in ("pyro", "normflows", "zuko")]
    sentences = []
    for update in dict.fromkeys(row["update"] for row in rows):
        parts = []
        for flow in dict.fromkeys(row["flow"] for row in rows if row["update"] == update):
            longest = max(
                (row for row in rows if row["update"] == update and row["flow"] == flow), key=lambda r: int(r["K"])
            )
            timed = [
                f"{peer} {longest[peer]}×" for peer in peers if longest.get(peer, "-") not in ("-", "absent", "differs")
            ]
            failed = [peer for peer in peers if longest.get(peer) == "differs"]
            if timed or failed:
                text = f"{flow} K={longest['K']}: " + ", ".join(timed)
                parts.append(text + (f" ({', '.join(failed)}: computes something else, not timed)" if failed else ""))
        if parts:
            sentences.append(
                f"**{update}**, each peer's time per update as a multiple of ours: " + "; ".join(parts) + "."
            )
    return " ".join(sentences) if sentences else "No peer was timed in the committed report."
