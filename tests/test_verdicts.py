"""The verdict rules decide as their docstring says, at and around each threshold."""

from __future__ import annotations

import pytest

from nf.report.verdicts import Verdict, beats, falls_along, not_tested, table2_number, with_paper_optimiser


@pytest.mark.parametrize(
    "ours,verdict",
    [(88.0, "reproduced"), (90.9, "reproduced"), (91.5, "partly"), (91.9, "partly"), (92.0, "not reproduced")],
)
def test_table2_number(ours, verdict):
    assert table2_number(ours, 89.9).verdict == verdict


def test_a_table2_number_far_below_the_papers_is_flagged():
    assert (
        table2_number(88.0, 89.9).reason
        == "ours 88.00, paper 89.9 (-1.90 nats); better than the paper's by more than 1 nat"
    )
    assert table2_number(89.0, 89.9).reason == "ours 89.00, paper 89.9 (-0.90 nats)"


def test_fall_along_a_ladder():
    steps = [(-1.0, 0.1), (-0.5, 0.1), (-0.2, 0.1)]
    assert falls_along(steps, (-1.7, 0.2), paper_fall=-3.0).verdict == "reproduced"
    small = falls_along(steps, (-1.7, 0.2), paper_fall=-4.8)
    assert small.verdict == "partly" and "less than 50% of the paper's fall" in small.reason
    rising = falls_along([(-2.0, 0.1), (0.5, 0.1)], (-1.5, 0.2))
    assert rising.verdict == "partly" and "rises significantly" in rising.reason
    assert falls_along([(0.5, 0.1)], (-1.5, 0.2)).verdict == "partly"
    assert falls_along(steps, (-0.3, 0.2)).verdict == "not reproduced"  # not two standard errors
    assert falls_along(steps, (0.6, 0.2)).verdict == "not reproduced"


def test_beats_at_every_some_or_no_length():
    labels = ["K=10", "K=20"]
    assert beats([(1.0, 0.1), (0.5, 0.2)], labels).verdict == "reproduced"
    some = beats([(1.0, 0.1), (0.1, 0.2)], labels)
    assert some.verdict == "partly" and "significant at K=10 only" in some.reason
    against = beats([(-1.0, 0.1), (0.1, 0.2)], labels, "B minus A")
    assert against.verdict == "not reproduced"
    assert against.reason == "B minus A: K=10: -1.00 ± 0.10, K=20: +0.10 ± 0.20; significantly the other way at K=10"


def test_only_under_the_papers_optimiser():
    report, paper = Verdict("not reproduced", "a"), Verdict("reproduced", "b")
    qualified = with_paper_optimiser(report, paper)
    assert qualified.verdict == "partly" and qualified.reason.startswith("only under the paper's optimiser")
    assert with_paper_optimiser(paper, report) == paper
    assert with_paper_optimiser(report, not_tested("x")) == report


def test_unknown_verdict_is_refused():
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        Verdict("maybe", "")


def _toy_row(energy, family, length, kl, sd=0.01, seeds=3):
    return {"energy": energy, "family": family, "length": length, "kl": kl, "kl_sd": sd, "seeds": seeds}


def test_toy_verdicts_follow_the_exact_kl():
    from nf.report.toy_verdicts import toy_verdicts

    rows = [_toy_row(e, "planar", k, 1.0 / k) for e in ("U1", "U2") for k in (2, 32)]
    rows += [_toy_row(e, "nice-perm", k, 2.0 / k) for e in ("U1", "U2") for k in (2, 32)]
    improves, planar_nice = toy_verdicts(rows)
    assert improves["verdict"] == "reproduced" and "U2 K=2→32: +0.47" in improves["evidence"]
    assert planar_nice["verdict"] == "reproduced" and "lower in all 4 (target" in planar_nice["evidence"]
    rows[-1] = _toy_row("U2", "nice-perm", 32, 0.0)  # NICE clearly better on one comparison
    rows[1] = _toy_row("U1", "planar", 32, 0.5, sd=0.5)  # a drop within the seeds' noise
    improves, planar_nice = toy_verdicts(rows)
    assert improves["verdict"] == "partly" and planar_nice["verdict"] == "partly"
    assert "significantly higher in 1: U2 nice-perm K=32" in planar_nice["evidence"]


def test_toy_verdicts_without_runs_are_not_tested():
    from nf.report.toy_verdicts import toy_verdicts

    assert {r["verdict"] for r in toy_verdicts(None)} == {"not tested"}


def test_the_rules_are_written_out_from_the_constants(monkeypatch):
    import nf.report.verdicts as verdicts

    assert "at most 1 nat above the paper's" in verdicts.verdict_rules()
    monkeypatch.setattr(verdicts, "CLOSE_NATS", 0.5)
    monkeypatch.setattr(verdicts, "GAIN_FRACTION", 0.25)
    text = verdicts.verdict_rules()
    assert "at most 0.5 nat above the paper's" in text and "at least 25% of the paper's fall" in text
