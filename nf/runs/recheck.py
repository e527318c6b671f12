"""A run trained again from scratch, compared with the run the cache holds: does it reproduce its numbers?

Training is meant to be deterministic for one config at one thread, so a run trained a second time (on another
day, by another code version, in an empty results folder) should store the same values as the first.  A
*recheck* compares the two entries of one cache key, part by part (a tensor or a JSON entry of each stored file):
the largest absolute difference between them (``0.0`` where every value is equal, NaNs and infinities included).
Three kinds of part are not compared, and are listed instead: timings (``TIMING_KEYS``: they measure the machine,
not the model), parts only one of the two stored (``unmatched``: a later code version may store more), and parts
whose shapes, lengths, keys or types differ (``mismatched``: they do not describe the same thing).  A run
*reproduces* its numbers if something was compared, nothing mismatched, and every difference is zero.

A recheck is stored as ``<results>/rechecks/<experiment>/<key>.json`` (written atomically) with the config,
both trainings' code versions, dates, packages, machines and file checksums, so that the book can show it and a
reader can make it again: train the config into another results folder (``NF_RESULTS_DIR=<folder>``), then
``python -m nf runs recheck <experiment> <folder>``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nf.runs.atomic import write_atomically
from nf.runs.cache import Run, list_runs, lookup, results_root

RECHECKS = "rechecks"
EXPERIMENTS = ("toy", "mnist", "gaps")
TIMING_KEYS = frozenset({"seconds_per_update", "seconds_per_1000_updates", "seconds"})  # mnist, toy, gaps
PROVENANCE_KEYS = ("git_commit", "created", "packages", "machine", "checksums")


class Mismatch(Exception):
    """Two values that do not describe the same thing: shapes, lengths, keys or types differ."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_difference(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.inf


def _largest_difference(committed: Any, retrained: Any) -> float:
    """The largest absolute difference between two values of one structure, nested JSON or tensors (equal values
    differ by 0, NaNs and infinities included; a finite value against a non-finite one by infinity); raises
    ``Mismatch`` where the structures differ."""
    if isinstance(committed, torch.Tensor) and isinstance(retrained, torch.Tensor):
        if committed.shape != retrained.shape or committed.dtype != retrained.dtype:
            raise Mismatch
        if committed.numel() == 0 or torch.equal(committed, retrained):
            return 0.0
        a, b = committed.double().flatten(), retrained.double().flatten()
        return max(_number_difference(x, y) for x, y in zip(a.tolist(), b.tolist()))
    if _is_number(committed) and _is_number(retrained):
        return _number_difference(float(committed), float(retrained))
    if isinstance(committed, (list, tuple)) and isinstance(retrained, (list, tuple)):
        if len(committed) != len(retrained):
            raise Mismatch
        return max((_largest_difference(a, b) for a, b in zip(committed, retrained)), default=0.0)
    if isinstance(committed, Mapping) and isinstance(retrained, Mapping):
        if set(committed) != set(retrained):
            raise Mismatch
        return max((_largest_difference(committed[k], retrained[k]) for k in committed), default=0.0)
    if type(committed) is type(retrained) and (committed is None or isinstance(committed, (str, bool))):
        return 0.0 if committed == retrained else math.inf
    raise Mismatch


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
    """The recheck of ``committed`` by ``retrained``, two entries of one cache key (module docstring): per part
    compared (``scores.pt/nll``, ``metrics.json/history``) its largest absolute difference and how many values it
    holds, and the parts ``ignored`` (timings), ``unmatched`` and ``mismatched``."""
    if committed.key != retrained.key or committed.experiment != retrained.experiment:
        raise ValueError(
            f"run {retrained.experiment}/{retrained.key} is not a retraining of {committed.experiment}/{committed.key}"
        )
    files, files_again = set(committed.provenance["checksums"]), set(retrained.provenance["checksums"])
    differences, sizes, ignored, mismatched = {}, {}, [], []
    unmatched = sorted(files ^ files_again)
    for name in sorted(files & files_again):
        before, after = _parts(_load(committed, name)), _parts(_load(retrained, name))
        unmatched += sorted(f"{name}/{part}" for part in set(before) ^ set(after))
        for part in sorted(set(before) & set(after)):
            label = f"{name}/{part}" if part else name
            if part in TIMING_KEYS:
                ignored.append(label)
                continue
            try:
                differences[label] = _largest_difference(before[part], after[part])
            except Mismatch:
                mismatched.append(label)
                continue
            sizes[label] = _size(before[part])
    return {
        "experiment": committed.experiment,
        "key": committed.key,
        "config": committed.config,
        "committed": {k: committed.provenance[k] for k in PROVENANCE_KEYS},
        "retrained": {k: retrained.provenance[k] for k in PROVENANCE_KEYS},
        "differences": {label: _storable(d) for label, d in differences.items()},
        "sizes": sizes,
        "ignored": ignored,
        "unmatched": unmatched,
        "mismatched": mismatched,
    }


def _storable(difference: float) -> float | str:
    """A difference as strict JSON stores it: an infinite one as the string ``"inf"`` (read back by ``largest``)."""
    return difference if math.isfinite(difference) else "inf"


def recheck_path(experiment: str, key: str, results_dir: str | os.PathLike | None = None) -> Path:
    """Where the recheck of run ``experiment/key`` is stored."""
    return results_root(results_dir) / RECHECKS / experiment / f"{key}.json"


def record_rechecks(
    experiment: str, retrained_dir: str | os.PathLike, results_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Recheck every run of ``experiment`` in the results folder ``retrained_dir`` that the cache at
    ``results_dir`` also holds, and store each recheck (``recheck_path``).  An entry that is a copy of the cache's
    (the same training: the same provenance, checksums and creation time included) is not a retraining and is
    skipped."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}")
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
        records.append(compare_runs(committed, retrained))
    for record in records:  # stored once every comparison has been made
        text = (json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
        write_atomically(recheck_path(experiment, record["key"], results_dir), lambda f, text=text: f.write(text))
    return records


def stored_rechecks(experiment: str, results_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every stored recheck of ``experiment``'s runs whose first training is still the cache's entry (a recheck of
    an entry since replaced is left out), ordered by the retraining's date."""
    folder = results_root(results_dir) / RECHECKS / experiment
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text())
        cached = lookup(experiment, record["config"], results_dir)
        if cached is not None and all(cached.provenance[k] == record["committed"][k] for k in PROVENANCE_KEYS):
            records.append(record)
    return sorted(records, key=lambda record: record["retrained"]["created"])


def largest(record: Mapping[str, Any], prefix: str = "") -> float:
    """The largest difference of a recheck over the parts whose label starts with ``prefix`` (all by default)."""
    found = [float(d) for label, d in record["differences"].items() if label.startswith(prefix)]
    return max(found, default=0.0)


def compared(record: Mapping[str, Any], prefix: str = "") -> int:
    """How many values a recheck compared in the parts whose label starts with ``prefix`` (all by default)."""
    return sum(n for label, n in record["sizes"].items() if label.startswith(prefix))


def reproduced(record: Mapping[str, Any]) -> bool:
    """Whether a recheck finds the run reproduced: something compared, nothing mismatched, every difference 0."""
    return compared(record) > 0 and not record["mismatched"] and largest(record) == 0
