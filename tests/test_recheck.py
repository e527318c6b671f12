"""Rechecks: a run trained again from scratch, compared file by file with the cached one."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from nf.book.cli import main
from nf.report.provenance import recheck_reading, recheck_rows
from nf.runs.cache import lookup, store_run
from nf.runs.recheck import compare_runs, compared, largest, recheck_path, record_rechecks, stored_rechecks

CONFIG = {"flow": "planar", "length": 2, "updates": 10, "seed": 0}


def store(folder, nll=(1.0, 2.0, 3.0), history=((5, 0.5, 90.0), (10, 1.0, 80.0)), seconds=0.1, config=CONFIG):
    def write(path):
        torch.save({"nll": torch.tensor(nll), "bound": torch.tensor(nll) + 1}, path / "scores.pt")
        metrics = {"test_nll": sum(nll) / len(nll), "history": [list(row) for row in history]}
        (path / "metrics.json").write_text(json.dumps({**metrics, "seconds_per_update": seconds}))

    return store_run("mnist", config, write, folder, version="a" * 40)


def test_an_identical_retraining_differs_by_zero_and_its_timing_is_left_out(tmp_path):
    committed, retrained = store(tmp_path / "cache"), store(tmp_path / "again", seconds=0.5)
    record = compare_runs(committed, retrained)
    assert set(record["differences"]) == {
        "metrics.json/history",
        "metrics.json/test_nll",
        "scores.pt/bound",
        "scores.pt/nll",
    }
    assert largest(record) == 0.0
    assert record["ignored"] == ["metrics.json/seconds_per_update"]
    assert compared(record, "scores.pt/") == 6 and compared(record) == 6 + 6 + 1


def test_a_difference_is_measured_where_it_is(tmp_path):
    committed = store(tmp_path / "cache")
    retrained = store(tmp_path / "again", nll=(1.0, 2.25, 3.0), history=((5, 0.5, 90.0), (10, 1.0, 79.0)))
    record = compare_runs(committed, retrained)
    assert record["differences"]["scores.pt/nll"] == pytest.approx(0.25)
    assert record["differences"]["metrics.json/history"] == pytest.approx(1.0)
    assert largest(record, "scores.pt/") == pytest.approx(0.25)
    assert largest(record) == pytest.approx(1.0)


def test_a_shape_or_a_length_that_differs_counts_as_infinite(tmp_path):
    committed = store(tmp_path / "cache")
    retrained = store(tmp_path / "again", nll=(1.0, 2.0), history=((5, 0.5, 90.0),))
    record = compare_runs(committed, retrained)
    assert record["differences"]["scores.pt/nll"] == math.inf
    assert record["differences"]["metrics.json/history"] == math.inf


def test_parts_stored_by_one_training_only_are_listed_not_compared(tmp_path):
    committed = store(tmp_path / "cache")

    def write(path):
        torch.save({"nll": torch.tensor([1.0, 2.0, 3.0]), "bound": torch.tensor([2.0, 3.0, 4.0])}, path / "scores.pt")
        metrics = {"test_nll": 2.0, "history": [[5, 0.5, 90.0], [10, 1.0, 80.0]], "resumes": 3}
        (path / "metrics.json").write_text(json.dumps(metrics))
        (path / "parameters.pt").write_bytes(b"")

    record = compare_runs(committed, store_run("mnist", CONFIG, write, tmp_path / "again"))
    assert record["unmatched"] == ["parameters.pt", "metrics.json/resumes", "metrics.json/seconds_per_update"]
    assert largest(record) == 0.0 and "metrics.json/resumes" not in record["differences"]
    assert recheck_reading([record]).endswith("(timings left out; 3 parts stored by one training only, not compared).")


def test_runs_of_different_configs_are_refused(tmp_path):
    committed = store(tmp_path / "cache")
    other = store(tmp_path / "again", config={**CONFIG, "seed": 1})
    with pytest.raises(ValueError, match="is not a retraining of"):
        compare_runs(committed, other)


def test_record_rechecks_stores_retrainings_and_skips_copies_and_unknown_runs(tmp_path):
    cache, again = tmp_path / "cache", tmp_path / "again"
    store(cache)
    copied = store(cache, config={**CONFIG, "seed": 1})
    store(again, nll=(1.0, 2.0, 3.5))
    shutil.copytree(copied.path, again / "mnist" / copied.key)  # the same training, copied: not a retraining
    store(again, config={**CONFIG, "seed": 2})  # not in the cache: nothing to compare with
    records = record_rechecks("mnist", again, cache)
    key = lookup("mnist", CONFIG, cache).key
    assert [r["key"] for r in records] == [key]
    assert json.loads(recheck_path("mnist", key, cache).read_text())["differences"]["scores.pt/nll"] == 0.5
    assert stored_rechecks("mnist", cache) == records
    assert [p.name for p in recheck_path("mnist", key, cache).parent.iterdir()] == [f"{key}.json"]  # no temp file


def test_the_report_reads_the_records(tmp_path):
    cache, again = tmp_path / "cache", tmp_path / "again"
    store(cache)
    store(again, seconds=0.2)
    records = record_rechecks("mnist", again, cache)
    assert recheck_reading([]) == "No run has been trained a second time yet."
    reading = recheck_reading(records)
    assert "One run has been trained a second time" in reading and "bit for bit" in reading
    assert "by the same code version" in reading and "6 of them per-image test scores" in reading
    (row,) = recheck_rows(records)
    assert row["reproduced"] == "bit for bit" and row["run"].startswith("planar K=2")
    store(again, config={**CONFIG, "seed": 1}, nll=(1.0, 2.0, 4.0))
    store(cache, config={**CONFIG, "seed": 1})
    records = record_rechecks("mnist", again, cache)
    assert "1 of them reproduce what they stored bit for bit, 1 do not" in recheck_reading(records)
    assert sorted(row["reproduced"] for row in recheck_rows(records)) == ["bit for bit", "no"]


def test_the_command_prints_a_line_per_run_and_refuses_bad_folders(tmp_path, monkeypatch, capsys):
    cache, again = tmp_path / "cache", tmp_path / "again"
    store(cache)
    store(again, seconds=0.2)
    monkeypatch.setenv("NF_RESULTS_DIR", str(cache))
    assert main(["runs", "recheck", "mnist", str(again)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "per-image scores 0, everything 0" in out[0] and out[-1].startswith("rechecked 1 run of mnist")
    assert main(["runs", "recheck", "mnist", str(tmp_path / "missing")]) == 2
    missing = tmp_path / "missing"
    error = f"error: no mnist runs in {missing}: train them there first (NF_RESULTS_DIR={missing})"
    assert capsys.readouterr().err.strip() == error
    assert main(["runs", "recheck", "mnist", str(cache)]) == 2
    assert "is the cache itself" in capsys.readouterr().err
