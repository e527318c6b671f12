"""The chapters' tables: empty tables, flattened chapter profiles, the scorecard's NICE rows."""

from __future__ import annotations

import pytest

from nf.book.chapter_runs import mnist_configs, mnist_evidence, mnist_verdict
from nf.book.profiles import PROFILE_NAMES, PROFILES, chapter_parameters
from nf.experiments.mnist import run_configs
from nf.report.scorecard import mnist_rows, mnist_training_note
from nf.report.tables import analyses_table, markdown_table, profiles_table


def test_markdown_table_without_rows_says_so():
    assert "no runs" in markdown_table([])
    assert markdown_table([{"a": 1, "b": "x"}]).splitlines() == ["| a | b |", "|---|---|", "| 1 | x |"]
    assert markdown_table([{"a ± b": "1.00 ± 0.20"}]).splitlines()[2] == "| 1.00\u00a0±\u00a00.20 |"


def test_a_bar_inside_a_cell_is_escaped_so_the_row_keeps_its_cells():
    header, _, row = markdown_table([{"KL(q‖p(z|x))": "a|b", "n": 1}]).splitlines()
    assert header == "| KL(q‖p(z\\|x)) | n |" and row == "| a\\|b | 1 |"
    assert header.replace("\\|", "").count("|") == 3


def test_profiles_table_flattens_the_toy_and_mnist_parts():
    table = profiles_table(PROFILES)
    assert "| nice | `toy.families` |" in table and "| conv | `mnist.models` |" in table
    assert "{'energies'" not in table  # no whole dictionaries in a cell
    assert "| none 0, planar 10, planar 20," in table  # models as "flow K", without brackets or quotes
    assert "paper's RMSprop: (optimizer: rmsprop; learning_rate: 1e-05;" in table
    assert "recipe: paper's RMSprop; updates: none |" in table  # an empty list says so


def test_every_profile_gives_valid_configs_for_the_nice_and_conv_chapters():
    for chapter in ("nice", "conv"):
        for profile in PROFILE_NAMES:
            parameters = chapter_parameters(chapter, profile)
            assert mnist_configs(parameters["mnist"])
            assert parameters["mnist"]["models"][0] == ["none", 0]  # the baseline every comparison needs


def test_scorecard_has_a_nice_row_per_paper_value(tmp_path, monkeypatch):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))  # nothing cached: every row says so
    rows = mnist_rows(mnist_evidence())
    assert [r["model"] for r in rows if "NICE" in r["model"]] == [f"NICE-perm K={k}" for k in (10, 20, 40, 80)]
    assert [r["model"] for r in rows[:2]] == ["diagonal", "planar K=10"]
    assert all(r["ours"] == "not trained yet" for r in rows)
    assert mnist_training_note(mnist_evidence()) == "No Table 2 model is trained yet."


def _row(energy, family, length, kl, sd=0.01):
    return {"energy": energy, "family": family, "length": length, "kl": kl, "kl_sd": sd, "seeds": 3}


def test_toy_reading_is_phrased_from_the_numbers():
    from nf.report.toy import toy_reading

    rows = [_row(e, "planar", k, 1.0 / k) for e in ("U1", "U2") for k in (2, 8, 32)]
    rows += [_row(e, "nice-perm", k, 0.1 if k == 8 else 0.2, sd=0.5) for e in ("U1", "U2") for k in (2, 8, 32)]
    text = toy_reading(rows)
    assert "shrinks by a factor of 16.0 across the 2 targets" in text
    assert "At $K = 32$ planar flows have a lower KL than nice-perm on every target" in text
    assert "At $K = 8$ NICE is ahead of planar flows in both cases" in text
    assert "largest spread over seeds is 0.50 nats for NICE" in text


def test_runs_note_and_csv_name_every_run(tmp_path):
    from nf.experiments.toy import fit_toys, run_configs
    from nf.report.provenance import runs_csv, runs_note

    configs = run_configs(["U1"], ["planar"], [2], [0, 1], updates=20, anneal_updates=10, batch_size=8, eval_samples=50)
    runs = fit_toys(configs, tmp_path, workers=1)
    note = runs_note([*runs, None, runs[0]], "this table")
    assert note.startswith("<details><summary>The 2 cached runs behind this table")
    assert all(f"`{run.key}`" in note for run in runs) and runs_note([None]) == ""
    lines = runs_csv(["toy"], tmp_path).splitlines()
    assert len(lines) == 3 and lines[0].startswith("experiment,key,") and runs[0].key in "".join(lines)


def test_training_time_counts_every_update_across_resumes():
    from types import SimpleNamespace

    from nf.report.provenance import training_minutes

    resumed = SimpleNamespace(  # finished by a process that ran its last 22,500 updates only
        metrics={"seconds_per_update": 0.045}, config={"updates": 100_000}, provenance={"wall_time_seconds": 1330.0}
    )
    assert training_minutes(resumed) == pytest.approx(75.0)
    toy = SimpleNamespace(metrics={"kl": 0.1}, config={"energy": "U1"}, provenance={"wall_time_seconds": 90.0})
    assert training_minutes(toy) == pytest.approx(1.5)


def test_toy_caveat_names_the_seeds():
    from nf.report.scorecard import toy_caveat

    text = toy_caveat([_row("U1", "planar", 2, 1.0), {**_row("U2", "planar", 2, 1.0), "seeds": 5}])
    assert "at least 3 training seeds" in text and "a t-test with 2 to 4 degrees of freedom" in text
    assert toy_caveat(None) == ""


def test_one_mnist_verdict_by_the_start_of_its_claim(tmp_path, monkeypatch):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))  # nothing cached: the claim is not tested
    row = mnist_verdict("NICE's diagonal scaling layer helps")
    assert row["verdict"] == "not tested" and row["updates"] == "100,000"
    with pytest.raises(ValueError, match="no single MNIST claim starts with 'Table 2'"):
        mnist_verdict("Table 2")  # one claim per Table 2 model


def test_verdict_counts_set_apart_the_claims_the_paper_leaves_open():
    from nf.report.scorecard import verdict_counts

    rows = [
        {"verdict": "reproduced", "paper": "89.9"},
        {"verdict": "reproduced", "paper": "not reported"},
        {"verdict": "not reproduced", "paper": "86.5"},
    ]
    assert verdict_counts(rows) == ("2 reproduced (1 of them on a question the paper leaves open), 1 not reproduced")


def test_share_says_how_many_plainly():
    from nf.report.toy import share

    assert share(4, 4, "lengths") == "all 4 lengths" and share(2, 2, "cases") == "both cases"
    assert share(0, 3, "pairs") == "none of the 3 pairs" and share(1, 3, "pairs") == "1 of the 3 pairs"
    assert share(1, 1, "comparisons") == "the one comparison" and share(0, 1, "lengths") == "no length"


def test_scorecard_marks_the_toy_families_the_paper_does_not_show():
    from nf.report.scorecard import toy_rows

    summary = [{"energy": "U1", "family": f, "length": 32, "kl": 0.1, "kl_sd": 0.01} for f in ("planar", "radial")]
    rows = toy_rows((32, summary))
    assert [r["experiment"] for r in rows] == ["Toy U1, Fig. 3(d)", "Toy U1, ours, not in Fig. 3(d)"]
    assert [r["paper"] for r in rows] == ["bound plotted, no number", "not in the paper"]


def test_benchmark_lines_wrap_between_entries_not_inside_them():
    from nf.report.tables import PAGE_WIDTH, _wrapped

    entries = [f"family{i} K=20 1.50x" for i in range(12)]
    wrapped = _wrapped("update bfloat16/float32: " + " | ".join(entries)).splitlines()
    assert len(wrapped) > 1 and all(len(line) <= PAGE_WIDTH for line in wrapped)
    pieces = [p.strip() for line in wrapped for p in line.replace("update bfloat16/float32: ", "").split("|")]
    assert [p for p in pieces if p] == entries  # every entry whole, in order


REPORT_WITH_PEERS = """\
code version abc; Some CPU (bfloat16 instructions: none), x86_64, 2 cores; 2026-12-01; command: python ...
K=10  fast/K0 1.4x | plain/K0 1.8x | Pyro/K0 3.0x | Pyro/fast 2.1x
peer versions: torch 2.14.1; pyro-ppl 1.9.2, normflows 1.7.3, zuko 1.6.0
check Pyro DLGM planar K=10: float64 loss 2e-16, float64 gradients 9e-16, float32 loss 0e+00: agrees
peer note: zuko 1.6.0 has no planar or radial flow (zuko.flows, zuko.transforms): no zuko column
peers: update flow    K   ours/K0  ours/s  ours  plain  pyro  normflows  zuko
peers: DLGM   planar  10  1.40     30.1    1.00  1.29   2.10  -          -
peers: toy    radial  32  -        120     1.00  -      differs  1.50    -
toy fits (K=8, 1000 updates), 1 worker(s): 5.4 fits per minute
"""


def test_peer_rows_read_the_peers_block_of_a_benchmark_report():
    from nf.report.tables import peer_rows, peer_versions

    rows = peer_rows(REPORT_WITH_PEERS)
    assert [(r["update"], r["flow"], r["K"]) for r in rows] == [("DLGM", "planar", "10"), ("toy", "radial", "32")]
    assert rows[0] == {
        "update": "DLGM",
        "flow": "planar",
        "K": "10",
        "ours / K=0": "1.40",
        "ours, updates/s": "30.1",
        "ours": "1.00",
        "ours layer by layer": "1.29",
        "Pyro": "2.10",
        "normflows": "-",
        "zuko": "-",
    }
    assert (rows[1]["Pyro"], rows[1]["normflows"]) == ("differs", "1.50")
    assert markdown_table(rows).splitlines()[0].startswith("| update | flow | K | ours / K=0 |")
    assert peer_versions(REPORT_WITH_PEERS) == "torch 2.14.1; pyro-ppl 1.9.2, normflows 1.7.3, zuko 1.6.0"
    assert peer_rows("K=10  fast/K0 1.4x | plain/K0 1.8x") == [] and peer_versions("") == ""
    with pytest.raises(ValueError, match="columns this table does not know: \\['jax'\\]"):
        peer_rows("peers: update flow K jax")


def test_peers_table_reads_the_committed_report(tmp_path):
    from nf.report.tables import peers_table

    assert peers_table(tmp_path).startswith("No peers in the benchmark report yet")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "flow_update.txt").write_text(REPORT_WITH_PEERS)
    table = peers_table(tmp_path)
    assert "updates/s" not in table  # ratios only: no absolute time
    assert table.count("\n| ") == 2 and table.endswith(
        "Versions: torch 2.14.1; pyro-ppl 1.9.2, normflows 1.7.3, zuko 1.6.0."
    )


def test_peers_reading_names_each_peers_multiple_at_the_longest_flow(tmp_path):
    from nf.report.tables import peers_reading

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "flow_update.txt").write_text(REPORT_WITH_PEERS)
    assert peers_reading(str(tmp_path)) == (
        "**DLGM**, each peer's time per update as a multiple of ours: planar K=10: Pyro 2.10×. "
        "**toy**, each peer's time per update as a multiple of ours: radial K=32: normflows 1.50× "
        "(Pyro: computes something else, not timed)."
    )
    assert peers_reading(str(tmp_path / "none")) == "No peer was timed in the committed report."


def test_the_gap_analyses_table_groups_by_model_and_recipe_and_sums_the_core_hours(tmp_path):
    import json

    from nf.experiments.gaps import gap_config
    from nf.experiments.mnist import mnist_config
    from nf.runs.cache import store_run

    paper = dict(optimizer="rmsprop", learning_rate=1e-5, momentum=0.9, clip_grad_norm=0.0)
    analyses = [  # (analysed run, images, seconds)
        (mnist_config(flow="planar", length=2, protocol="test"), 1000, 3600.0),
        (mnist_config(flow="planar", length=2, protocol="test"), 100, 600.0),
        (mnist_config(flow="none", length=0, protocol="test", **paper), 1000, 1800.0),
        (mnist_config(flow="none", length=0, protocol="test"), 1000, 1200.0),
    ]
    for run, images, seconds in analyses:
        metrics = json.dumps({"seconds": seconds})
        store_run("gaps", gap_config(run, images=images), lambda f: (f / "metrics.json").write_text(metrics), tmp_path)
    lines = analyses_table(tmp_path).splitlines()
    assert lines[0].startswith("| model | recipe | analyses | on ≥ 1,000 images | total time (min) | longest (min) |")
    assert [line.split(" | ")[:6] for line in lines[2:]] == [
        ["| none K=0", "ours", "1", "1", "20.0", "20.0"],
        ["| planar K=2", "ours", "2", "1", "70.0", "60.0"],
        ["| none K=0", "paper's", "1", "1", "30.0", "30.0"],
        ["| all: 2.0 core-hours", "", "4", "3", "120.0", ""],
    ]
    assert analyses_table(tmp_path / "empty") == "No cached gap analyses yet."


def test_the_training_note_names_our_recipe_and_the_flows_start():
    configs = run_configs([["none", 0], ["planar", 2]], protocol="test", updates=60, anneal_updates=20)
    note = mnist_training_note(({}, {}, configs, [object(), object()]))  # both "trained": the note reads configs only
    assert note.startswith("Ours are trained with ") and " for 60 updates, each flow started at random, " in note
    assert "the paper's with rmsprop 1e-05, momentum 0.9 for 500,000" in note
