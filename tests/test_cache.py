"""The run cache: hashing, atomic writes, concurrency and corruption."""

from __future__ import annotations

import json
import threading

import pytest

from nf.runs.cache import cached_run, config_hash, list_runs, lookup


def write_metrics(config, folder, checkpoint=None):
    (folder / "metrics.json").write_text(json.dumps({"value": config["x"] * 2}))


def test_hash_is_stable_and_sensitive():
    assert config_hash("toy", {"a": 1, "b": 2}) == config_hash("toy", {"b": 2, "a": 1})
    assert config_hash("toy", {"a": 1}) != config_hash("toy", {"a": 2})
    assert config_hash("toy", {"a": 1}) != config_hash("mnist", {"a": 1})


def test_trains_once_then_loads(tmp_path):
    calls = []

    def train(config, folder, checkpoint):
        calls.append(1)
        write_metrics(config, folder)

    first = cached_run("exp", {"x": 3}, train, tmp_path)
    second = cached_run("exp", {"x": 3}, train, tmp_path)
    assert len(calls) == 1
    assert first.path == second.path
    assert second.load_json("metrics.json") == {"value": 6}
    provenance = second.provenance
    assert provenance["config"] == {"x": 3}
    assert set(provenance) >= {"git_commit", "packages", "machine", "wall_time_seconds", "checksums"}
    assert [p.name for p in (tmp_path / "exp").iterdir()] == [first.key]  # no temporary folders left


def test_failed_training_leaves_no_entry(tmp_path):
    def train(config, folder, checkpoint):
        (folder / "metrics.json").write_text("{")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_run("exp", {"x": 1}, train, tmp_path)
    assert lookup("exp", {"x": 1}, tmp_path) is None
    assert list((tmp_path / "exp").iterdir()) == []


def test_corrupt_entry_is_detected_and_recomputed(tmp_path):
    run = cached_run("exp", {"x": 2}, write_metrics, tmp_path)
    (run.path / "metrics.json").write_text(json.dumps({"value": 999}))
    assert lookup("exp", {"x": 2}, tmp_path) is None
    again = cached_run("exp", {"x": 2}, write_metrics, tmp_path)
    assert again.load_json("metrics.json") == {"value": 4}


def test_concurrent_runs_of_one_config_do_not_clobber(tmp_path):
    calls = []

    def train(config, folder, checkpoint):
        calls.append(1)
        write_metrics(config, folder)

    runs = []
    threads = [
        threading.Thread(target=lambda: runs.append(cached_run("exp", {"x": 5}, train, tmp_path))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1  # the second waited for the first and loaded its entry
    assert len(runs) == 2 and runs[0].path == runs[1].path
    assert runs[0].load_json("metrics.json") == {"value": 10}
    assert len(list_runs("exp", tmp_path)) == 1
    assert len(list((tmp_path / "exp").iterdir())) == 1


def test_unwritable_results_folder_gives_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write to the results folder"):
        cached_run("exp", {"x": 1}, write_metrics, blocker)


def test_only_this_machines_abandoned_work_is_removed(tmp_path):
    """A results folder shared by machines: a dead process of this host leaves a folder that is cleaned up;
    another host's folder is left alone, since its process cannot be checked from here."""
    import subprocess
    import sys

    from nf.runs.cache import _host

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    parent = tmp_path / "exp"
    key = config_hash("exp", {"x": 1})
    mine = parent / f".{key}.{_host()}.{pid}.abc123.tmp"
    theirs = parent / f".{key}.other-node-7.{pid}.abc123.tmp"
    alive = parent / f".{key}.{_host()}.1.abc123.tmp"  # pid 1 (init) is always alive
    for folder in (mine, theirs, alive):
        folder.mkdir(parents=True)
    run = cached_run("exp", {"x": 1}, lambda config, folder, checkpoint: (folder / "a.txt").write_text("1"), tmp_path)
    assert run is not None and not mine.exists() and theirs.exists() and alive.exists()


def test_a_run_asked_for_twice_at_once_is_trained_once(tmp_path):
    """A second process (here a thread) asking for a run that is being trained waits for the first and loads its
    entry; while the first trains, the run's lock shows it as being trained."""
    import threading

    from nf.runs.cache import run_is_locked

    started, release, calls = threading.Event(), threading.Event(), []

    def slow(config, folder, checkpoint):
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(timeout=30)
        (folder / "a.txt").write_text("1")

    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", cached_run("exp", {"x": 1}, slow, tmp_path)))
    first.start()
    assert started.wait(timeout=30)
    assert run_is_locked("exp", {"x": 1}, tmp_path)
    second = threading.Thread(target=lambda: results.setdefault("second", cached_run("exp", {"x": 1}, slow, tmp_path)))
    second.start()
    second.join(timeout=0.5)
    assert second.is_alive()  # waiting for the first
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert len(calls) == 1 and results["first"].key == results["second"].key
    assert not run_is_locked("exp", {"x": 1}, tmp_path)
