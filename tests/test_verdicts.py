"""The verdict rules decide as their docstring says, at and around each threshold."""

from __future__ import annotations

import math

import pytest

from nf.report.verdicts import (
    Verdict,
    beats,
    falls_along,
    margin,
    not_tested,
    shown_margin,
    table2_number,
    verdict_columns,
    with_paper_optimiser,
    with_uncertainty,
)


@pytest.mark.parametrize(
    "ours,u,verdict",
    [
        (88.0, 0.2, "reproduced"),  # below the paper's
        (90.3, 0.2, "reproduced"),  # 0.4 nats above: 3 uncertainties inside the 1-nat threshold
        (90.5, 0.2, "not established"),  # 0.6 above: 2 uncertainties from the threshold, not beyond
        (91.1, 0.2, "not established"),  # just past the threshold, within 2 uncertainties
        (91.4, 0.2, "partly"),
        (91.5, 0.2, "not established"),  # 0.4 nats from the 2-nat threshold: exactly 2 uncertainties
        (92.1, 0.2, "not established"),
        (92.5, 0.2, "not reproduced"),
        (90.5, 0.1, "reproduced"),  # the same gap with half the uncertainty decides
        (91.1, 0.0, "partly"),  # an exact number decides on the number alone
    ],
)
def test_table2_number(ours, u, verdict):
    assert table2_number(ours, 89.9, u).verdict == verdict


def test_a_table2_number_carries_its_margin_and_says_what_it_cannot_decide():
    far = table2_number(88.0, 89.9, 0.25)
    assert far.reason == "ours 88.00 ± 0.25, paper 89.9 (-1.90 nats); better than the paper's by more than 1 nat"
    assert far.ours == "88.00 ± 0.25" and far.margin == pytest.approx(2.9 / 0.25)
    close = table2_number(88.87, 87.9, 0.25)  # planar K=10's case: 0.03 nats inside the 1-nat threshold
    assert close.verdict == "not established" and close.margin == pytest.approx(0.03 / 0.25)
    assert close.reason.endswith("within 2 uncertainties of the 1-nat threshold: reproduced or partly")


def test_the_uncertainty_adds_the_spread_over_seeds():
    assert with_uncertainty(0.3, 0.4) == pytest.approx(0.5)
    assert with_uncertainty(0.3, 0.4, seeds=4) == pytest.approx((0.09 + 0.04) ** 0.5)
    with pytest.raises(ValueError, match="at least 1, got 0"):
        with_uncertainty(0.3, 0.4, seeds=0)
    with pytest.raises(ValueError, match="non-negative number, got -1"):
        margin(1.0, 0.0, -1.0)


def test_a_difference_the_size_of_the_seed_spread_is_not_established():
    """Planar K=20 with seed 0 against seed 2: 0.12 nats apart, five paired standard errors (0.024) of the test
    images, but one standard deviation of retraining (0.12): the rule must not call it a difference."""
    se, seed_sd = 0.024, 0.12
    assert beats([(0.12, se)], ["K=20"]).verdict == "reproduced"  # the old rule, test images only
    assert beats([(0.12, with_uncertainty(se, seed_sd))], ["K=20"]).verdict == "not established"
    assert beats([(0.40, with_uncertainty(se, seed_sd))], ["K=20"]).verdict == "reproduced"
    assert beats([(0.12, with_uncertainty(se, seed_sd, seeds=4))], ["K=20"]).verdict == "not established"
    assert beats([(0.12, with_uncertainty(se, seed_sd, seeds=9))], ["K=20"]).verdict == "reproduced"  # a mean


def test_fall_along_a_ladder():
    steps = [(-1.0, 0.1), (-0.5, 0.1), (-0.2, 0.1)]
    fall = falls_along(steps, (-1.7, 0.2), paper_fall=-2.0)
    assert fall.verdict == "reproduced" and fall.ours == "-1.70 ± 0.20"
    assert fall.margin == pytest.approx(0.7 / 0.2)  # the closest call: 0.7 nats past half the paper's fall
    small = falls_along(steps, (-1.7, 0.2), paper_fall=-4.8)
    assert small.verdict == "partly" and "less than 50% of the paper's fall" in small.reason
    assert small.margin == pytest.approx(0.7 / 0.2)
    near_half = falls_along(steps, (-1.7, 0.2), paper_fall=-3.0)
    assert near_half.verdict == "not established" and "reproduced or partly" in near_half.reason
    rising = falls_along([(-2.0, 0.1), (0.5, 0.1)], (-1.5, 0.2))
    assert rising.verdict == "partly" and rising.reason.endswith("; rises decidedly at step +0.50 ± 0.10")
    assert falls_along([(0.5, 0.1)], (-1.5, 0.2)).verdict == "partly"
    assert falls_along([(0.15, 0.1)], (-1.5, 0.2)).verdict == "reproduced"  # a step within its uncertainty
    assert falls_along(steps, (-0.3, 0.2)).verdict == "not established"  # not two uncertainties
    assert falls_along(steps, (-0.41, 0.2)).verdict == "reproduced"
    assert falls_along(steps, (0.6, 0.2)).verdict == "not reproduced"
    assert falls_along(steps, (0.3, 0.2)).verdict == "not established"


def test_a_labelled_fall_names_every_rising_step_whatever_its_verdict():
    labels = ["K=0 → 10", "K=10 → 20"]
    within = falls_along([(-2.0, 0.1), (0.15, 0.1)], (-1.85, 0.2), labels=labels)
    assert within.verdict == "reproduced"
    assert within.reason.endswith("; rising within 2 uncertainties: K=10 → 20 by +0.15 ± 0.10")
    decided = falls_along([(-0.3, 0.1), (0.5, 0.1)], (0.2, 0.2), labels=labels)  # no change overall
    assert decided.verdict == "not established" and decided.reason.endswith(
        "; rises decidedly at step K=10 → 20 by +0.50 ± 0.10"
    )
    partly = falls_along([(-2.0, 0.1), (0.5, 0.1)], (-1.5, 0.2), labels=labels)
    assert partly.verdict == "partly" and partly.reason.endswith("; rises decidedly at step K=10 → 20 by +0.50 ± 0.10")
    with pytest.raises(ValueError, match="falls_along: 2 labels for 1 steps"):
        falls_along([(-2.0, 0.1)], (-2.0, 0.1), labels=labels)
    assert falls_along([(-2.0, 0.1), (0.15, 0.1)], (-1.85, 0.2)).reason == "first to last rung: -1.85 ± 0.20"


def test_beats_at_every_some_or_no_length():
    labels = ["K=10", "K=20"]
    every = beats([(1.0, 0.1), (0.5, 0.2)], labels)
    assert every.verdict == "reproduced" and every.margin == pytest.approx(2.5) and every.ours == "+0.50 ± 0.20 (K=20)"
    some = beats([(1.0, 0.1), (0.1, 0.2)], labels)
    assert some.verdict == "partly" and "decided at K=10 only" in some.reason
    assert some.margin == pytest.approx(10.0) and some.ours == "+1.00 ± 0.10 (K=10)"  # the decided win, not K=20
    against = beats([(-1.0, 0.1), (0.1, 0.2)], labels, "B minus A")
    assert against.verdict == "not reproduced" and against.margin == pytest.approx(10.0)
    unsure = beats([(0.3, 0.2), (0.1, 0.2)], labels)
    assert unsure.verdict == "not established" and unsure.margin == pytest.approx(0.5)
    assert against.reason == "B minus A: K=10: -1.00 ± 0.10, K=20: +0.10 ± 0.20; the other way at K=10"
    assert beats([(0.39, 0.2), (-0.3, 0.2)], labels).verdict == "not established"
    assert beats([(0.41, 0.2), (-0.3, 0.2)], labels).verdict == "partly"


def test_only_under_the_papers_optimiser():
    report, paper = Verdict("not reproduced", "a", "x", 3.0), Verdict("reproduced", "b", "y", 5.0)
    qualified = with_paper_optimiser(report, paper)
    assert qualified.verdict == "partly" and qualified.reason.startswith("only under the paper's optimiser")
    assert qualified.margin == 3.0 and qualified.ours == "x"
    assert with_paper_optimiser(Verdict("not established", "c", "z", 1.0), paper).verdict == "partly"
    assert with_paper_optimiser(paper, report) == paper
    assert with_paper_optimiser(report, not_tested("x")) == report


def test_verdict_columns_show_the_margin():
    assert verdict_columns(Verdict("partly", "r", "+0.50 ± 0.20", 2.54)) == {
        "ours": "+0.50 ± 0.20",
        "verdict": "partly",
        "margin": "2.5",
        "evidence": "r",
    }
    assert verdict_columns(not_tested("x"))["margin"] == "—"


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
    assert "A margin of at most 2 decides" in verdicts.verdict_rules()
    monkeypatch.setattr(verdicts, "CLOSE_NATS", 0.5)
    monkeypatch.setattr(verdicts, "GAIN_FRACTION", 0.25)
    text = verdicts.verdict_rules()
    assert "at most 0.5 nat above the paper's" in text and "at least 25% of the paper's fall" in text


def test_a_decided_margin_never_reads_as_the_threshold():
    shown = [shown_margin(m) for m in (None, math.inf, 1.96, 2.0, 2.04, 2.004, 2.06, 12.34)]
    assert shown == ["—", "∞", "2.0", "2.0", "2.04", "2.004", "2.1", "12.3"]  # undecided up to 2.0 itself
