"""Rechecks: a run trained again from scratch, compared part by part with the cached one."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from nf.book.cli import main
from nf.report.provenance import recheck_reading, recheck_rows
from nf.runs.cache import lookup, store_run
from nf.runs.recheck import (
    compare_runs,
    compared,
    largest,
    recheck_path,
    record_rechecks,
    reproduced,
    stored_rechecks,
)

CONFIG = {"flow": "planar", "length": 2, "updates": 10, "seed": 0}


def store(
    folder,
    nll=(1.0, 2.0, 3.0),
    history=((5, 0.5, 90.0), (10, 1.0, 80.0)),
    seconds=0.1,
    config=CONFIG,
    version="a" * 40,
    extra=None,
):
    def write(path):
        torch.save({"nll": torch.tensor(nll), "bound": torch.tensor(nll) + 1}, path / "scores.pt")
        metrics = {"test_nll": sum(nll) / len(nll), "history": [list(row) for row in history], **(extra or {})}
        (path / "metrics.json").write_text(json.dumps({**metrics, "seconds_per_update": seconds}))

    return store_run("mnist", config, write, folder, version=version)


def test_an_identical_retraining_differs_by_zero_and_its_timing_is_left_out(tmp_path):
    committed, retrained = store(tmp_path / "cache"), store(tmp_path / "again", seconds=0.5)
    record = compare_runs(committed, retrained)
    assert set(record["differences"]) == {
        "metrics.json/history",
        "metrics.json/test_nll",
        "scores.pt/bound",
        "scores.pt/nll",
    }
    assert largest(record) == 0.0 and reproduced(record)
    assert record["ignored"] == ["metrics.json/seconds_per_update"]
    assert record["unmatched"] == [] and record["mismatched"] == []
    assert compared(record, "scores.pt/") == 6 and compared(record) == 6 + 6 + 1


def test_a_difference_is_measured_where_it_is(tmp_path):
    committed = store(tmp_path / "cache")
    retrained = store(tmp_path / "again", nll=(1.0, 2.25, 3.0), history=((5, 0.5, 90.0), (10, 1.0, 79.0)))
    record = compare_runs(committed, retrained)
    assert record["differences"]["scores.pt/nll"] == pytest.approx(0.25)
    assert record["differences"]["metrics.json/history"] == pytest.approx(1.0)
    assert largest(record, "scores.pt/") == pytest.approx(0.25)
    assert largest(record) == pytest.approx(1.0) and not reproduced(record)


def test_equal_nans_and_infinities_differ_by_zero_and_a_finite_value_against_them_by_infinity(tmp_path):
    nan, inf = math.nan, math.inf
    committed = store(tmp_path / "cache", nll=(nan, inf, 3.0), extra={"flags": [nan, -inf, "x", None, True]})
    same = store(tmp_path / "again", nll=(nan, inf, 3.0), seconds=0.2, extra={"flags": [nan, -inf, "x", None, True]})
    assert reproduced(compare_runs(committed, same))
    other = store(tmp_path / "other", nll=(nan, 1.0, 3.0), extra={"flags": [nan, -inf, "y", None, True]})
    record = compare_runs(committed, other)
    assert record["differences"]["scores.pt/nll"] == "inf" and largest(record, "scores.pt/") == math.inf
    assert record["differences"]["metrics.json/flags"] == "inf"
    json.dumps(record, allow_nan=False)  # strict JSON


@pytest.mark.parametrize("first,second", [(1.0, "1.0"), ("1.0", 1.0), (1.0, None), ([1.0], 1.0), (True, 1)])
def test_values_of_different_types_are_mismatched_whichever_comes_first(tmp_path, first, second):
    committed = store(tmp_path / "cache", extra={"value": first})
    record = compare_runs(committed, store(tmp_path / "again", extra={"value": second}))
    assert record["mismatched"] == ["metrics.json/value"] and "metrics.json/value" not in record["differences"]
    assert not reproduced(record)


def test_a_shape_or_a_length_that_differs_is_mismatched(tmp_path):
    committed = store(tmp_path / "cache")
    retrained = store(tmp_path / "again", nll=(1.0, 2.0), history=((5, 0.5, 90.0),))
    record = compare_runs(committed, retrained)
    assert record["mismatched"] == ["metrics.json/history", "scores.pt/bound", "scores.pt/nll"]
    assert not reproduced(record)
    assert recheck_rows([record])[0]["reproduced"].startswith("no (3 parts mismatched: metrics.json/history")


def test_parts_stored_by_one_training_only_are_listed_not_compared(tmp_path):
    committed = store(tmp_path / "cache")

    def write(path):
        torch.save({"nll": torch.tensor([1.0, 2.0, 3.0]), "bound": torch.tensor([2.0, 3.0, 4.0])}, path / "scores.pt")
        metrics = {"test_nll": 2.0, "history": [[5, 0.5, 90.0], [10, 1.0, 80.0]], "resumes": 3}
        (path / "metrics.json").write_text(json.dumps(metrics))
        (path / "parameters.pt").write_bytes(b"")

    record = compare_runs(committed, store_run("mnist", CONFIG, write, tmp_path / "again"))
    assert record["unmatched"] == ["parameters.pt", "metrics.json/resumes", "metrics.json/seconds_per_update"]
    assert reproduced(record) and "metrics.json/resumes" not in record["differences"]
    assert recheck_reading([record]).endswith("(timings left out; 3 parts stored by one training only, not compared).")


def test_a_recheck_that_compared_nothing_is_not_a_reproduction(tmp_path):
    def write(name):
        return lambda path: (path / name).write_text(json.dumps({"seconds": 1.0}))

    committed = store_run("mnist", CONFIG, write("metrics.json"), tmp_path / "cache")
    record = compare_runs(committed, store_run("mnist", CONFIG, write("summary.json"), tmp_path / "again"))
    assert compared(record) == 0 and not reproduced(record)
    assert recheck_rows([record])[0]["reproduced"] == "nothing to compare"
    assert "it does not reproduce" in recheck_reading([record])


def test_the_toy_and_gaps_timings_are_left_out(tmp_path):
    def write(seconds):
        def files(path):
            (path / "metrics.json").write_text(json.dumps({"kl": 0.5, "seconds_per_1000_updates": seconds}))
            (path / "summary.json").write_text(json.dumps({"gap": 1.0, "seconds": seconds}))

        return files

    committed = store_run("toy", CONFIG, write(1.0), tmp_path / "cache")
    record = compare_runs(committed, store_run("toy", CONFIG, write(2.0), tmp_path / "again"))
    assert record["ignored"] == ["metrics.json/seconds_per_1000_updates", "summary.json/seconds"]
    assert reproduced(record)


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
    with pytest.raises(ValueError, match="unknown experiment 'mnst'; choose one of toy, mnist, gaps"):
        record_rechecks("mnst", again, cache)


def test_a_recheck_of_an_entry_since_replaced_is_left_out(tmp_path):
    cache, again = tmp_path / "cache", tmp_path / "again"
    first = store(cache)
    store(again, seconds=0.2)
    record_rechecks("mnist", again, cache)
    shutil.rmtree(first.path)
    store(cache, seconds=0.3)  # the cache's entry trained anew: the stored recheck is of another training
    assert stored_rechecks("mnist", cache) == []


def test_the_report_reads_the_records(tmp_path):
    cache, again = tmp_path / "cache", tmp_path / "again"
    store(cache)
    store(again, seconds=0.2)
    records = record_rechecks("mnist", again, cache)
    assert recheck_reading([]) == "No run has been trained a second time yet."
    assert recheck_reading(records) == (
        "One run has been trained a second time from scratch (by the same code version): it reproduces every value "
        "it stored the first time exactly. Compared: 13 stored values, 6 of them per-image test scores (timings "
        "left out)."
    )
    (row,) = recheck_rows(records)
    assert row["reproduced"] == "exactly" and row["run"].startswith("planar K=2")
    assert row["first trained"] == "`aaaaaaa`, " + records[0]["committed"]["created"][:10]
    store(again, config={**CONFIG, "seed": 1}, nll=(1.0, 2.0, 4.0), version="b" * 40 + "+modified")
    store(cache, config={**CONFIG, "seed": 1})
    records = record_rechecks("mnist", again, cache)
    assert recheck_reading(records).startswith(
        "2 runs have been trained a second time from scratch (1 of them by another code version): 1 of them "
        "reproduce every value it stored the first time exactly, 1 do not (table)."
    )
    assert sorted(row["reproduced"] for row in recheck_rows(records)) == ["exactly", "no"]
    assert "`bbbbbbb+modified`" in [row["trained again"].split(",")[0] for row in recheck_rows(records)]


def test_the_command_prints_a_line_per_run_and_refuses_bad_folders(tmp_path, monkeypatch, capsys):
    cache, again = tmp_path / "cache", tmp_path / "again"
    store(cache)
    store(again, seconds=0.2)
    monkeypatch.setenv("NF_RESULTS_DIR", str(cache))
    assert main(["runs", "recheck", "mnist", str(again)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "reproduced; largest |difference|: per-image scores 0, all 0" in out[0]
    assert out[-1].startswith("rechecked 1 run of mnist")
    assert main(["runs", "recheck", "mnist", str(tmp_path / "missing")]) == 2
    missing = tmp_path / "missing"
    error = f"error: no mnist runs in {missing}: train them there first (NF_RESULTS_DIR={missing})"
    assert capsys.readouterr().err.strip() == error
    assert main(["runs", "recheck", "mnist", str(cache)]) == 2
    assert "is the cache itself" in capsys.readouterr().err
