"""The run cache: expensive experiments are trained once and loaded afterwards.

A run is identified by the hash of its experiment name and full config.  Its
outputs live in ``<results>/<experiment>/<hash>/`` beside a ``provenance.json``
that records the config, the code version (git commit), package versions,
machine, wall time and a SHA-256 checksum of every file.

Writes are atomic: a run trains into a private temporary folder next to its
final place and is renamed into place only when complete, so a crash or an
interrupt never leaves a half-written entry, and two processes running the
same config do not clobber each other (the first to finish wins; the other
keeps the winner's entry).  An entry whose files do not match their checksums
is treated as missing and recomputed.

A process trains a run only while it holds the run's lock
(``<results>/<experiment>/.<hash>.lock``, an exclusive ``flock`` that the
operating system releases when the process ends, however it ends): a second
process asking for the same run waits for the first and then loads its
entry, or, if the first died (a cancelled job), takes over from its
checkpoint.  No run is trained twice at once, and ``run_is_locked`` tells
whether a live process is training it now.

A trainer may save its state to ``<results>/<experiment>/.<hash>.checkpoint.pt``
(the path it is given); running the same config again after an interrupt or
a crash resumes from there.  The checkpoint is removed once the run is stored.

``<results>`` is the ``results_dir`` argument, else ``$NF_RESULTS_DIR``, else
``results/`` at the top of the repository.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import torch

from nf.runs.checkpoint import remove_checkpoint
from nf.runs.parallel import run_tasks

RESULTS_ENV_VAR = "NF_RESULTS_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
PROVENANCE = "provenance.json"


def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """Resolve the cache folder: argument, else ``$NF_RESULTS_DIR``, else ``results/`` in the repository."""
    if results_dir is not None:
        return Path(results_dir)
    env = os.environ.get(RESULTS_ENV_VAR)
    return Path(env) if env else REPO_ROOT / "results"


def config_hash(experiment: str, config: Mapping[str, Any]) -> str:
    """A short, stable hash of the experiment name and its JSON-serialisable config."""
    text = json.dumps({"experiment": experiment, "config": config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of the repository, with ``+modified`` if ``nf/`` has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "nf"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+modified" if dirty else "")


def _package_versions() -> dict[str, str]:
    import numpy

    from nf import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "nf": __version__,
    }


def _machine() -> dict[str, Any]:
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@dataclass(frozen=True)
class Run:
    """A finished, verified run in the cache."""

    experiment: str
    key: str
    path: Path
    provenance: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.provenance["config"]

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """``metrics.json``, read once per ``Run``."""
        return self.load_json("metrics.json")

    def load_json(self, name: str) -> Any:
        with open(self.path / name) as f:
            return json.load(f)

    def load_tensors(self, name: str) -> Any:
        return torch.load(self.path / name, map_location="cpu", weights_only=True)


def _verified(path: Path) -> dict[str, Any] | None:
    """The provenance of a complete entry whose checksums match, else None."""
    try:
        with open(path / PROVENANCE) as f:
            provenance = json.load(f)
        files = provenance["checksums"]
        present = {p.name for p in path.iterdir() if p.name != PROVENANCE}
        if present != set(files):
            return None
        if any(_sha256(path / name) != digest for name, digest in files.items()):
            return None
        return provenance
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host() -> str:
    """This machine's name, as it appears in the names of its temporary run folders (no dots)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", platform.node() or "localhost")


def _work_folders(parent: Path, key: str) -> list[tuple[Path, str, int]]:
    """The temporary folders of runs of ``key`` being (or once) trained, as ``(folder, host, pid)``: a folder is
    named ``.<key>.<host>.<pid>.<random>.tmp`` (``store_run``)."""
    found = []
    for path in parent.glob(f".{key}.*.tmp"):
        parts = path.name.split(".")  # ["", key, host, pid, random, "tmp"]
        try:
            found.append((path, parts[2], int(parts[3])))
        except (IndexError, ValueError):
            continue
    return found


def _remove_abandoned_work(parent: Path, key: str) -> None:
    """Delete temporary folders of ``key`` left by processes of *this* machine that no longer exist (killed
    mid-run).  Another machine's folders (a results folder shared by cluster nodes) are never touched, since their
    processes cannot be checked from here.
    """
    for path, host, pid in _work_folders(parent, key):
        if host == _host() and pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)


def held_elsewhere(experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None) -> bool:
    """Whether another machine's process holds a temporary folder of the run of ``config`` (a results folder shared
    by cluster nodes): whether it is alive cannot be checked from here.  On this machine ``run_is_locked`` tells."""
    parent = results_root(results_dir) / experiment
    folders = _work_folders(parent, config_hash(experiment, config)) if parent.is_dir() else []
    return any(host != _host() for _, host, _ in folders)


def _lock_path(experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None) -> Path:
    return results_root(results_dir) / experiment / f".{config_hash(experiment, config)}.lock"


@contextmanager
def _training_lock(path: Path) -> Iterator[None]:
    """Hold the run's lock (module docstring), waiting while another live process holds it; the lock file records
    who holds it (host, process, SLURM job) and is removed when it is released."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(path, "a+")
            fcntl.flock(f, fcntl.LOCK_EX)
            try:  # the holder before us removes the file as it releases it: lock the file that is there now
                if os.fstat(f.fileno()).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            f.close()
    except OSError as error:
        raise OSError(f"cannot write to the results folder {path.parent}: {error.strerror or error}") from None
    try:
        f.write(json.dumps({"host": _host(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID")}))
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        f.close()  # releases the lock


def run_is_locked(experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None) -> bool:
    """Whether a live process holds the lock of the run of ``config`` (is training it now)."""
    path = _lock_path(experiment, config, results_dir)
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def checkpoint_path(experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None) -> Path:
    """Where a run of ``config`` keeps its checkpoint while it trains (removed once the run is stored)."""
    return results_root(results_dir) / experiment / f".{config_hash(experiment, config)}.checkpoint.pt"


def lookup(experiment: str, config: Mapping[str, Any], results_dir: str | os.PathLike | None = None) -> Run | None:
    """The cached run for this config if a verified one exists."""
    key = config_hash(experiment, config)
    path = results_root(results_dir) / experiment / key
    provenance = _verified(path) if path.is_dir() else None
    return None if provenance is None else Run(experiment, key, path, provenance)


def cached_run(
    experiment: str,
    config: Mapping[str, Any],
    train: Callable[[dict[str, Any], Path, Path], None],
    results_dir: str | os.PathLike | None = None,
    version: str | None = None,
) -> Run:
    """Return the run of ``config``: from the cache if there, else by calling ``train(config, folder, checkpoint)``.

    ``train`` writes its outputs (small files: JSON metrics, tensors) into
    ``folder``; it must not write a file named ``provenance.json``.  It may
    save and resume its state at ``checkpoint``.
    ``version`` is the code version to record (default: ``code_version()``
    read before training starts, i.e. the code that trains).
    """
    config = json.loads(json.dumps(dict(config)))  # a JSON-clean copy: what is hashed is what is stored
    found = lookup(experiment, config, results_dir)
    if found is not None:
        return found
    with _training_lock(_lock_path(experiment, config, results_dir)):
        found = lookup(experiment, config, results_dir)  # the process this one waited for may have stored it
        if found is not None:
            return found
        checkpoint = checkpoint_path(experiment, config, results_dir)
        run = store_run(experiment, config, lambda folder: train(config, folder, checkpoint), results_dir, version)
        remove_checkpoint(checkpoint)  # with any temporary file a killed save left
    return run


def store_run(
    experiment: str,
    config: Mapping[str, Any],
    write: Callable[[Path], None],
    results_dir: str | os.PathLike | None = None,
    version: str | None = None,
    earlier_seconds: float = 0.0,
) -> Run:
    """Store the run of ``config`` whose files ``write(folder)`` writes, atomically (module docstring).

    ``cached_run`` stores a run this way when it is trained; a trainer stores the runs it passes on its way (a
    budget point of a longer run with a constant learning rate) this way too.  The recorded wall time is the
    time ``write`` takes plus ``earlier_seconds`` (time spent before it, such as the training up to a budget).
    """
    config = json.loads(json.dumps(dict(config)))
    key = config_hash(experiment, config)
    parent = results_root(results_dir) / experiment
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_work(parent, key)
        work = Path(tempfile.mkdtemp(prefix=f".{key}.{_host()}.{os.getpid()}.", suffix=".tmp", dir=parent))
    except OSError as error:
        raise OSError(f"cannot write to the results folder {parent}: {error.strerror or error}") from None
    final = parent / key
    version = version or code_version()
    try:
        start = time.perf_counter()
        write(work)
        wall_time = earlier_seconds + time.perf_counter() - start
        checksums = {p.name: _sha256(p) for p in sorted(work.iterdir())}
        provenance = {
            "experiment": experiment,
            "key": key,
            "config": config,
            "git_commit": version,
            "packages": _package_versions(),
            "machine": _machine(),
            "wall_time_seconds": round(wall_time, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "checksums": checksums,
        }
        with open(work / PROVENANCE, "w") as f:
            json.dump(provenance, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        if final.exists() and _verified(final) is None:
            shutil.rmtree(final, ignore_errors=True)  # a corrupt entry: replace it
        try:
            os.rename(work, final)
        except OSError:
            pass  # another process finished the same run first; keep its entry
    finally:
        shutil.rmtree(work, ignore_errors=True)
    run = lookup(experiment, config, results_dir)
    if run is None:
        raise RuntimeError(f"the run {experiment}/{key} could not be stored in {parent}")
    return run


def cached_runs(
    experiment: str,
    configs: Sequence[Mapping[str, Any]],
    train: Callable[[dict[str, Any], Path, Path], None] | None,
    results_dir: str | os.PathLike | None = None,
    workers: int = 1,
) -> list[Run | None]:
    """The runs of many configs, in their order: cached ones loaded, missing ones trained by ``cached_run``.

    With ``workers > 1`` the missing runs train in that many processes of one
    thread each (``train`` must then be picklable: a module-level function or
    a ``functools.partial`` of one).  With ``train=None`` nothing is trained
    and a missing run is ``None``.  The code version is read once, before the
    first run trains, so every run records the code that trains it.
    """
    runs = [lookup(experiment, c, results_dir) for c in configs]
    missing = [c for c, run in zip(configs, runs) if run is None]
    if train is None or not missing:
        return runs
    version = code_version()
    folder = None if results_dir is None else str(results_dir)
    run_tasks([partial(cached_run, experiment, c, train, folder, version) for c in missing], workers)
    return [run or lookup(experiment, c, results_dir) for c, run in zip(configs, runs)]


def list_runs(experiment: str, results_dir: str | os.PathLike | None = None) -> list[Run]:
    """Every verified run of ``experiment`` in the cache, oldest first."""
    parent = results_root(results_dir) / experiment
    if not parent.is_dir():
        return []
    runs = []
    for path in sorted(parent.iterdir()):
        provenance = _verified(path) if path.is_dir() and not path.name.startswith(".") else None
        if provenance is not None:
            runs.append(Run(experiment, path.name, path, provenance))
    return sorted(runs, key=lambda run: run.provenance["created"])
