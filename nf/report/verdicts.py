"""Verdicts on the paper's claims, by rules written down before the runs that they judge were trained.

One vocabulary (``VERDICTS``): *reproduced*, *partly* (with the reason),
*not reproduced*, *not tested* (a run the rule needs is missing).  Every
rule works on numbers from the runs, never on typed-in results:

* **A Table 2 number** (``table2_number``): ours, importance-sampled
  ``-ln p(x)`` on the test set, is *reproduced* if it is at most
  ``CLOSE_NATS`` above the paper's (or below it), *partly* if at most
  ``NEAR_NATS`` above, else *not reproduced*.
* **A quantity falls along a ladder** (``falls_along``), for example
  ``-ln p(x)`` with the planar flow length ``K = 0, 10, 20, 40, 80``: from
  paired differences on the same images, each step ``(d, se)`` from one rung
  to the next and the whole ladder ``(D, SE)`` from the first to the last.
  *Reproduced* if the whole fall is significant (``D < -SIGNIFICANT * SE``),
  at least ``GAIN_FRACTION`` of the paper's fall where the paper gives one,
  and no step rises significantly (``d > SIGNIFICANT * se``); *partly* if the
  whole fall is significant but either of the other two conditions fails;
  else *not reproduced*.
* **One model beats another** (``beats``), at each of several flow lengths:
  paired differences ``(d, se)`` of ``-ln p(x)`` (the other model minus the
  claimed winner, so a positive difference favours the claim); *reproduced*
  if the claimed winner is significantly better at every length, *partly* if
  at some, *not reproduced* if at none.  The reason names the lengths where
  the other model is significantly better.
* **Only under the paper's optimiser** (``with_paper_optimiser``): a claim
  that fails under our report recipe (or holds only partly) but holds in the
  runs with the paper's optimiser is *partly*, "only under the paper's
  optimiser".  Those runs are the diagonal model and planar ``K = 20`` only,
  so this qualifies only the claim they test.

The rules for a Table 2 number, a fall along a ladder and ``beats`` were
fixed before the report ladder was trained.  Later changes apply them to
more evidence or show them more plainly: the paper-optimiser qualifier
(added after the study's first runs); the study's recipes, first one verdict
each, then the evidence of the one claim they test; the Table 2 rule applied
to the NICE rows (after NICE-perm ``K = 10`` and 20 were trained).

Significance is ``SIGNIFICANT`` standard errors of the paired difference
over the scored images: the error of the images' sample (and of the
importance estimate), for one trained model each.  It does not include the
spread over training seeds, which the MNIST chapter shows beside it where a
model was trained with several seeds; the verdicts use seed 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nf.experiments.comparisons import SIGNIFICANT

VERDICTS = ("reproduced", "partly", "not reproduced", "not tested")
CLOSE_NATS = 1.0
NEAR_NATS = 2.0
GAIN_FRACTION = 0.5


@dataclass(frozen=True)
class Verdict:
    """A verdict from ``VERDICTS`` and the numbers that decided it."""

    verdict: str
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; choose one of {', '.join(VERDICTS)}")


def not_tested(missing: str, so_far: str = "") -> Verdict:
    """No verdict until ``missing`` is trained; ``so_far``: the evidence of the runs already trained, if any."""
    return Verdict("not tested", (f"so far {so_far}; " if so_far else "") + f"not trained yet: {missing}")


def table2_number(ours: float, paper: float) -> Verdict:
    """Our ``-ln p(x)`` against the paper's (module docstring)."""
    gap = round(ours - paper, 2)  # decided on the number shown
    text = f"ours {ours:.2f}, paper {paper:.1f} ({gap:+.2f} nats)"
    if gap < -CLOSE_NATS:  # a stronger baseline than the paper's is what shrinks the flows' gains
        return Verdict("reproduced", f"{text}; better than the paper's by more than {CLOSE_NATS:g} nat")
    if gap <= CLOSE_NATS:
        return Verdict("reproduced", text)
    if gap <= NEAR_NATS:
        return Verdict("partly", f"{text}; within {NEAR_NATS:g} nats")
    return Verdict("not reproduced", text)


def _significant(difference: float, se: float) -> bool:
    return abs(difference) > SIGNIFICANT * se


def falls_along(
    steps: Sequence[tuple[float, float]],
    whole: tuple[float, float],
    paper_fall: float | None = None,
    span: str = "first to last rung",
) -> Verdict:
    """Does a quantity fall along a ladder? ``steps`` and ``whole`` are paired ``(difference, se)`` (module docstring);
    ``span`` names the ladder's ends in the reason."""
    d, se = whole
    text = f"{span}: {d:+.2f} ± {se:.2f}"
    if paper_fall is not None:
        text += f" (paper {paper_fall:+.1f})"
    if not (d < 0 and _significant(d, se)):
        return Verdict("not reproduced", f"{text}: no significant fall")
    rises = [i for i, (step, step_se) in enumerate(steps) if step > 0 and _significant(step, step_se)]
    small = paper_fall is not None and d > GAIN_FRACTION * paper_fall
    if not rises and not small:
        return Verdict("reproduced", text)
    reasons = []
    if small:
        reasons.append(f"less than {GAIN_FRACTION:.0%} of the paper's fall")
    if rises:
        reasons.append(
            f"rises significantly at step{'s' if len(rises) > 1 else ''} "
            + ", ".join(f"{steps[i][0]:+.2f} ± {steps[i][1]:.2f}" for i in rises)
        )
    return Verdict("partly", f"{text}; " + "; ".join(reasons))


def beats(differences: Sequence[tuple[float, float]], labels: Sequence[str], names: str = "") -> Verdict:
    """Is the claimed winner better at every length? ``differences``: other minus winner, paired (module docstring);
    ``names``: what the differences are, e.g. ``"NICE minus planar"``, to start the reason."""
    wins = [label for (d, se), label in zip(differences, labels) if d > 0 and _significant(d, se)]
    losses = [label for (d, se), label in zip(differences, labels) if d < 0 and _significant(d, se)]
    text = (f"{names}: " if names else "") + ", ".join(
        f"{label}: {d:+.2f} ± {se:.2f}" for (d, se), label in zip(differences, labels)
    )
    if losses:
        text += f"; significantly the other way at {', '.join(losses)}"
    if len(wins) == len(differences):
        return Verdict("reproduced", text)
    if wins:
        return Verdict("partly", f"{text}; significant at {', '.join(wins)} only")
    return Verdict("not reproduced", text)


def with_paper_optimiser(report: Verdict, paper_optimiser: Verdict) -> Verdict:
    """The report recipe's verdict, qualified by the paper optimiser's (module docstring)."""
    if report.verdict in ("partly", "not reproduced") and paper_optimiser.verdict == "reproduced":
        return Verdict(
            "partly", f"only under the paper's optimiser ({paper_optimiser.reason}); our recipe: {report.reason}"
        )
    return report


def verdict_rules() -> str:
    """The rules that decide the verdicts, written out from the constants the code uses (a Markdown list)."""
    return "\n".join(
        [
            f"- **A Table 2 number** (MNIST): ours, the importance-sampled $-\\ln p(x)$ on the test set, is "
            f"*reproduced* if it is at most {CLOSE_NATS:g} nat above the paper's (or below it), *partly* if at most "
            f"{NEAR_NATS:g} nats above, else *not reproduced*.",
            f"- **A quantity falls with $K$** (MNIST, from $K = 0$ to 80, or to 20 for the claim about planar "
            f"$K = 20$ against the diagonal model): *reproduced* if the paired fall exceeds "
            f"{SIGNIFICANT:g} standard errors, is at least {GAIN_FRACTION:.0%} of the paper's fall where the paper "
            f"gives one, and no step along the ladder rises by more than {SIGNIFICANT:g} standard errors; *partly* "
            f"if the fall is significant but one of the other two conditions fails; else *not reproduced*.",
            f"- **One model beats another** (MNIST and toy): *reproduced* if it is better by more than "
            f"{SIGNIFICANT:g} standard errors at every length compared, *partly* if at some, *not reproduced* if at "
            f"none. MNIST differences are paired on the same test images; toy differences are of the mean exact KL "
            f"over training seeds, with the standard error from the seeds' spread.",
            "- **Only under the paper's optimiser** (MNIST, planar $K = 20$ against the diagonal model): a claim "
            "that fails or holds only partly under our recipe but holds with the paper's optimiser (the study's "
            "runs, validation set) is *partly*, and says so.",
            "- **Not tested**: a run the rule needs is not trained yet; where the rule compares models at several "
            "lengths, the comparisons already trained are shown as *so far*.",
            "- **Signs.** Differences of $-\\ln p(x)$ are paired on the same images and read as *A minus B*: along "
            "a ladder the longer flow minus the shorter, between two models as the evidence names them (e.g. "
            "*NICE-perm minus planar*); a negative difference means that A has the lower $-\\ln p(x)$.",
        ]
    )
