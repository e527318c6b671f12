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
    assert beats([(-1.0, 0.1), (0.1, 0.2)], labels).verdict == "not reproduced"


def test_only_under_the_papers_optimiser():
    report, paper = Verdict("not reproduced", "a"), Verdict("reproduced", "b")
    qualified = with_paper_optimiser(report, paper)
    assert qualified.verdict == "partly" and qualified.reason.startswith("only under the paper's optimiser")
    assert with_paper_optimiser(paper, report) == paper
    assert with_paper_optimiser(report, not_tested("x")) == report


def test_unknown_verdict_is_refused():
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        Verdict("maybe", "")
