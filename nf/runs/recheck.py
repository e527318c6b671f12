"""A run trained again from scratch, compared with the run the cache holds: does it reproduce its numbers?

Training is meant to be deterministic for one config at one thread, so a run trained a second time (on another
day, by a later code version, in an empty results folder) should store the same files as the first.  A
*recheck* compares the two entries of one cache key, file by file: for every tensor and every number in the
committed entry, the largest absolute difference from the retrained entry (``0.0`` where they agree bit for
bit).  Timings (``TIMING_KEYS``) are left out: they measure the machine, not the model.

A recheck is stored as ``<results>/rechecks/<experiment>/<key>.json`` (written atomically) with the config,
both trainings' code versions, dates, packages and machines, and the differences, so that the book can show
it and a reader can re-run it: train the config into another results folder
(``NF_RESULTS_DIR=<folder>``), then ``python -m nf runs recheck <experiment> <folder>``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nf.runs.cache import Run, list_runs, lookup, results_root

RECHECKS = "rechecks"
TIMING_KEYS = frozenset({"seconds_per_update"})
PROVENANCE_KEYS = ("git_commit", "created", "packages", "machine")


def _largest_difference(committed: Any, retrained: Any, where: str) -> float:
    """The largest absolute difference between two values of the same shape: nested JSON (numbers, strings,
    lists, dictionaries) or tensors.  A string that differs, or a difference of shape or keys, counts as
    infinite: the files do not describe the same thing."""
    if isinstance(committed, torch.Tensor) and isinstance(retrained, torch.Tensor):
        if committed.shape != retrained.shape:
            return math.inf
        if committed.numel() == 0:
            return 0.0
        return (committed.double() - retrained.double()).abs().max().item()
    if isinstance(committed, bool) or isinstance(committed, str) or committed is None:
        return 0.0 if committed == retrained else math.inf
    if isinstance(committed, (int, float)) and isinstance(retrained, (int, float)):
        return abs(float(committed) - float(retrained))
    if isinstance(committed, (list, tuple)) and isinstance(retrained, (list, tuple)):
        if len(committed) != len(retrained):
            return math.inf
        return max((_largest_difference(a, b, where) for a, b in zip(committed, retrained)), default=0.0)
    if isinstance(committed, Mapping) and isinstance(retrained, Mapping):
        if set(committed) != set(retrained):
            return math.inf
        return max((_largest_difference(committed[k], retrained[k], where) for k in committed), default=0.0)
    raise ValueError(f"cannot compare {where}: a {type(committed).__name__} against a {type(retrained).__name__}")


def _size(value: Any) -> int:
    """How many numbers (or strings) a value holds: a tensor's elements, a JSON value's leaves."""
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (list, tuple)):
        return sum(_size(v) for v in value)
    if isinstance(value, Mapping):
        return sum(_size(v) for v in value.values())
    return 1


def _load(run: Run, name: str) -> Any:
    return run.load_json(name) if name.endswith(".json") else run.load_tensors(name)


def _parts(value: Any) -> dict[str, Any]:
    """A file's parts compared one by one: a dictionary's entries, or the whole value as ``""``."""
    return dict(value) if isinstance(value, Mapping) else {"": value}


def compare_runs(committed: Run, retrained: Run) -> dict[str, Any]:
    """The recheck of ``committed`` by ``retrained``, two entries of one cache key (module docstring): each
    file's parts (``scores.pt/nll``, ``metrics.json/history``) with their largest absolute difference and how many
    values each holds; the timings left out (``ignored``), and the files or parts that only one of the two stored
    (``unmatched``: a later code version may store more), not compared."""
    if committed.key != retrained.key or committed.experiment != retrained.experiment:
        raise ValueError(
            f"run {retrained.experiment}/{retrained.key} is not a retraining of {committed.experiment}/{committed.key}"
        )
    files, files_again = set(committed.provenance["checksums"]), set(retrained.provenance["checksums"])
    differences, sizes, ignored = {}, {}, []
    unmatched = sorted(files ^ files_again)  # stored by one training only (a later code version may store more)
    for name in sorted(files & files_again):
        before, after = _parts(_load(committed, name)), _parts(_load(retrained, name))
        unmatched += sorted(f"{name}/{part}" for part in set(before) ^ set(after))
        for part in sorted(set(before) & set(after)):
            label = f"{name}/{part}" if part else name
            if part in TIMING_KEYS:
                ignored.append(label)
                continue
            differences[label] = _largest_difference(before[part], after[part], label)
            sizes[label] = _size(before[part])
    return {
        "experiment": committed.experiment,
        "key": committed.key,
        "config": committed.config,
        "committed": {k: committed.provenance[k] for k in PROVENANCE_KEYS},
        "retrained": {k: retrained.provenance[k] for k in PROVENANCE_KEYS},
        "differences": differences,
        "sizes": sizes,
        "ignored": ignored,
        "unmatched": unmatched,
    }


def recheck_path(experiment: str, key: str, results_dir: str | os.PathLike | None = None) -> Path:
    """Where the recheck of run ``experiment/key`` is stored."""
    return results_root(results_dir) / RECHECKS / experiment / f"{key}.json"


def _write_atomically(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def record_rechecks(
    experiment: str, retrained_dir: str | os.PathLike, results_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Recheck every run of ``experiment`` in the results folder ``retrained_dir`` that the cache at
    ``results_dir`` also holds, and store each recheck (``recheck_path``).  An entry that is a copy of the cache's
    (the same training: the same provenance, checksums and creation time included) is not a retraining and is
    skipped."""
    folder = Path(retrained_dir)
    if not (folder / experiment).is_dir():
        raise ValueError(f"no {experiment} runs in {folder}: train them there first (NF_RESULTS_DIR={folder})")
    if folder.resolve() == results_root(results_dir).resolve():
        raise ValueError(f"{folder} is the cache itself: give the results folder the runs were retrained into")
    records = []
    for retrained in list_runs(experiment, folder):
        committed = lookup(experiment, retrained.config, results_dir)
        if committed is None or committed.provenance == retrained.provenance:
            continue
        record = compare_runs(committed, retrained)
        _write_atomically(recheck_path(experiment, committed.key, results_dir), record)
        records.append(record)
    return records


def stored_rechecks(experiment: str, results_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every stored recheck of ``experiment``'s runs, ordered by the retraining's date."""
    folder = results_root(results_dir) / RECHECKS / experiment
    records = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(records, key=lambda record: record["retrained"]["created"])


def largest(record: Mapping[str, Any], prefix: str = "") -> float:
    """The largest difference of a recheck over the parts whose label starts with ``prefix`` (all by default)."""
    return max((d for label, d in record["differences"].items() if label.startswith(prefix)), default=0.0)


def compared(record: Mapping[str, Any], prefix: str = "") -> int:
    """How many values a recheck compared in the parts whose label starts with ``prefix`` (all by default)."""
    return sum(n for label, n in record["sizes"].items() if label.startswith(prefix))
