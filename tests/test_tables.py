"""The chapters' tables: empty tables, flattened chapter profiles, the scorecard's NICE rows."""

from __future__ import annotations

from nf.book.chapter_runs import mnist_configs, mnist_evidence
from nf.book.profiles import PROFILE_NAMES, PROFILES, chapter_parameters
from nf.report.scorecard import mnist_rows
from nf.report.tables import markdown_table, profiles_table


def test_markdown_table_without_rows_says_so():
    assert "no runs" in markdown_table([])
    assert markdown_table([{"a": 1, "b": "x"}]).splitlines() == ["| a | b |", "|---|---|", "| 1 | x |"]


def test_a_bar_inside_a_cell_is_escaped_so_the_row_keeps_its_cells():
    header, _, row = markdown_table([{"KL(q‖p(z|x))": "a|b", "n": 1}]).splitlines()
    assert header == "| KL(q‖p(z\\|x)) | n |" and row == "| a\\|b | 1 |"
    assert header.replace("\\|", "").count("|") == 3


def test_profiles_table_flattens_the_toy_and_mnist_parts():
    table = profiles_table(PROFILES)
    assert "| nice | `toy.families` |" in table and "| conv | `mnist.models` |" in table
    assert "{'energies'" not in table  # no whole dictionaries in a cell


def test_every_profile_gives_valid_configs_for_the_nice_and_conv_chapters():
    for chapter in ("nice", "conv"):
        for profile in PROFILE_NAMES:
            parameters = chapter_parameters(chapter, profile)
            assert mnist_configs(parameters["mnist"])
            assert parameters["mnist"]["models"][0] == ["none", 0]  # the baseline every comparison needs


def test_scorecard_has_a_nice_row_per_paper_value(tmp_path, monkeypatch):
    monkeypatch.setenv("NF_RESULTS_DIR", str(tmp_path))  # nothing cached: every row says so
    rows = mnist_rows(mnist_evidence())
    assert [r["model"] for r in rows if "NICE" in r["model"]] == [f"DLGM+NICE (k = {k})" for k in (10, 20, 40, 80)]
    assert all(r["ours"].startswith("not run yet") for r in rows)
