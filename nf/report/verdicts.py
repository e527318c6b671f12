"""Verdicts on the paper's claims, by rules written down before the runs that they judge were trained.

One vocabulary (``VERDICTS``): *reproduced*, *partly* (with the reason),
*not reproduced*, *not established* (the deciding number lies too close to
the rule's threshold for its uncertainty: a retrained model could land on
the other side), *not tested* (a run the rule needs is missing); for a
hypothesis of this reproduction's own, not a claim of the paper, *supported*
or *not supported* (``nf.report.identity_start``).  Every
rule works on numbers from the runs, never on typed-in results, and each
number comes with its **uncertainty** ``u``:

* **The uncertainty survives retraining.**  A number that compares
  separately trained models (a Table 2 number against the paper's, one
  model against another, a fall along a ladder) varies with the test images
  *and* with the training seed.  So ``u = sqrt(se^2 + s^2 / n)``: ``se`` the
  standard error over the test images (paired where two models are compared),
  ``s`` the standard deviation over training seeds of the same quantity, and
  ``n`` the number of seeds averaged (a model trained with several seeds is
  judged on its mean over them).  ``s`` is measured where models were trained
  with several seeds and transferred to the rest (``nf.report.mnist_verdicts``
  says which; toy differences already are means over seeds with ``se`` from
  their spread).
* **A threshold decides only beyond ``SIGNIFICANT`` uncertainties.**  Each
  verdict carries its **margin**: the distance of the deciding number from the
  rule's nearest threshold in units of ``u`` (for a rule with several
  numbers, the closest call among those that decide it: for ``beats``, the
  decided wins, else the decided losses).  A margin of at most
  ``SIGNIFICANT`` cannot decide, and the verdict says so.

The rules:

* **A Table 2 number** (``table2_number``): the gap ``ours - paper``
  (importance-sampled ``-ln p(x)`` on the test set) is *reproduced* at most
  ``CLOSE_NATS`` (or below the paper's), *partly* at most ``NEAR_NATS``, else
  *not reproduced*; *not established* within ``SIGNIFICANT * u`` of
  ``CLOSE_NATS`` or ``NEAR_NATS``.
* **A quantity falls along a ladder** (``falls_along``), for example
  ``-ln p(x)`` with the planar flow length ``K = 0, 10, 20, 40, 80``: from
  paired differences on the same images, each step ``(d, u)`` from one rung to
  the next and the whole ladder ``(D, U)`` from the first to the last.
  *Reproduced* if the whole fall is decided (``D < -SIGNIFICANT * U``), at
  least ``GAIN_FRACTION`` of the paper's fall where the paper gives one
  (decided: beyond ``SIGNIFICANT * U`` of that fraction), and no step rises
  (``d > SIGNIFICANT * u``); *partly* if the whole fall is decided but it is
  decidedly smaller than that fraction or a step rises; *not reproduced* if the
  whole ladder decidedly rises; *not established* if ``|D| <= SIGNIFICANT * U``
  or the fall is within ``SIGNIFICANT * U`` of the paper's fraction.
* **One model beats another** (``beats``), at each of several flow lengths:
  differences ``(d, u)`` (the other model minus the claimed winner, so a
  positive difference favours the claim); *reproduced* if the claimed winner
  is decidedly better at every length, *partly* if at some, *not reproduced*
  if at none and decidedly worse at some, *not established* if no length
  decides either way.  The reason names the lengths where the other model is
  decidedly better.
* **Only under the paper's optimiser** (``with_paper_optimiser``): a claim
  that fails under our report recipe (or holds only partly, or is not
  established) but holds in the runs with the paper's optimiser is *partly*,
  "only under the paper's optimiser".  Those runs are the diagonal model and
  planar ``K = 20`` only, so this qualifies only the claim they test.

The rules for a Table 2 number, a fall along a ladder and ``beats`` were
fixed before the report ladder was trained.  Later changes apply them to
more evidence or show them more plainly: the paper-optimiser qualifier
(added after the study's first runs); the study's recipes, first one verdict
each, then the evidence of the one claim they test; the Table 2 rule applied
to the NICE rows (after NICE-perm ``K = 10`` and 20 were trained).  The
uncertainty ``u`` with the training seeds, the margin and *not established*
replaced the paired standard error of one seed per model after every report
run had been trained: a difference between two trained models of the size
the seeds alone produce (planar ``K = 20`` trained with seed 0 and seed 2
differs by five paired standard errors) had been called real.
``beats`` first gave the closest call among *all* its comparisons as its
margin, so a *partly* (decided at some lengths only) always showed a margin
of at most ``SIGNIFICANT``, as if nothing were decided; its margin is now that
of the comparisons that decide it (changed when the NICE scaling claim
became *partly*; no verdict changes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from nf.experiments.comparisons import SIGNIFICANT

VERDICTS = ("reproduced", "partly", "not reproduced", "not established", "not tested", "supported", "not supported")
CLOSE_NATS = 1.0
NEAR_NATS = 2.0
GAIN_FRACTION = 0.5


@dataclass(frozen=True)
class Verdict:
    """A verdict from ``VERDICTS``, the numbers that decided it (``reason``), the deciding number with its
    uncertainty (``ours``, e.g. ``"+0.97 ± 0.25"``) and the ``margin``: its distance from the rule's nearest threshold
    in uncertainties (module docstring); ``None`` where no number decided (not tested)."""

    verdict: str
    reason: str
    ours: str = ""
    margin: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; choose one of {', '.join(VERDICTS)}")

    def explained(self, reason: str) -> Verdict:
        """The same verdict, numbers and margin with another ``reason``."""
        return Verdict(self.verdict, reason, self.ours, self.margin)


def with_uncertainty(se: float, seed_sd: float, seeds: int = 1) -> float:
    """``u = sqrt(se^2 + s^2 / n)``: the test images' standard error ``se`` with the spread ``s`` over training seeds
    of a number averaged over ``n`` seeds (module docstring)."""
    if seeds < 1:
        raise ValueError(f"the number of training seeds must be at least 1, got {seeds}")
    return math.sqrt(se**2 + seed_sd**2 / seeds)


def margin(value: float, threshold: float, u: float) -> float:
    """How many uncertainties ``u`` separate ``value`` from ``threshold`` (infinite for an exact number)."""
    if u < 0 or math.isnan(u):
        raise ValueError(f"an uncertainty must be a non-negative number, got {u}")
    distance = abs(value - threshold)
    return distance / u if u > 0 else (math.inf if distance > 0 else 0.0)


def _decided(m: float) -> bool:
    return m > SIGNIFICANT


def _plus_minus(value: float, u: float) -> str:
    return f"{value:+.2f} ± {u:.2f}"


def not_tested(missing: str, so_far: str = "", ours: str = "", waiting: str = "not trained yet") -> Verdict:
    """No verdict until ``missing`` is trained; ``so_far``: the evidence of the runs already trained, if any, and
    ``ours`` its deciding number; ``waiting``: what ``missing`` lacks (empty: ``missing`` says it itself)."""
    return Verdict(
        "not tested", (f"so far {so_far}; " if so_far else "") + (f"{waiting}: " if waiting else "") + missing, ours
    )


def table2_number(ours: float, paper: float, u: float) -> Verdict:
    """Our ``-ln p(x)`` against the paper's, with the uncertainty ``u`` of ours (module docstring)."""
    gap = round(ours - paper, 2)  # decided on the number shown
    text = f"ours {ours:.2f} ± {u:.2f}, paper {paper:.1f} ({gap:+.2f} nats)"
    shown = f"{ours:.2f} ± {u:.2f}"
    edges = (CLOSE_NATS, NEAR_NATS)
    closest = min(edges, key=lambda edge: abs(gap - edge))
    m = margin(gap, closest, u)
    if not _decided(m):
        below, above = ("reproduced", "partly") if closest == CLOSE_NATS else ("partly", "not reproduced")
        return Verdict(
            "not established",
            f"{text}; within {SIGNIFICANT:g} uncertainties of the {closest:g}-nat threshold: {below} or {above}",
            shown,
            m,
        )
    if gap < -CLOSE_NATS:  # a stronger baseline than the paper's is what shrinks the flows' gains
        return Verdict("reproduced", f"{text}; better than the paper's by more than {CLOSE_NATS:g} nat", shown, m)
    if gap <= CLOSE_NATS:
        return Verdict("reproduced", text, shown, m)
    if gap <= NEAR_NATS:
        return Verdict("partly", f"{text}; within {NEAR_NATS:g} nats", shown, m)
    return Verdict("not reproduced", text, shown, m)


def falls_along(
    steps: Sequence[tuple[float, float]],
    whole: tuple[float, float],
    paper_fall: float | None = None,
    span: str = "first to last rung",
    labels: Sequence[str] | None = None,
) -> Verdict:
    """Does a quantity fall along a ladder? ``steps`` and ``whole`` are paired ``(difference, u)`` (module
    docstring); ``span`` names the ladder's ends in the reason.  The reason names every step that rises
    decidedly, whatever the verdict, and with ``labels`` (one per step, naming it) also every step that rises
    within its uncertainty."""
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"falls_along: {len(labels)} labels for {len(steps)} steps")
    rising = [(i, margin(step, 0.0, step_u)) for i, (step, step_u) in enumerate(steps) if step > 0]
    decided = [(i, m) for i, m in rising if _decided(m)]

    def named(indices: list[int]) -> str:
        return ", ".join((f"{labels[i]} by " if labels else "") + _plus_minus(*steps[i]) for i in indices)

    verdict = _fall_verdict(whole, paper_fall, span, [m for _, m in decided])
    notes = []
    if decided:
        notes.append(f"rises decidedly at step{'s' if len(decided) > 1 else ''} {named([i for i, _ in decided])}")
    within = [i for i, m in rising if not _decided(m)]
    if labels is not None and within:
        notes.append(f"rising within {SIGNIFICANT:g} uncertainties: {named(within)}")
    return replace(verdict, reason="; ".join([verdict.reason, *notes]))


def _fall_verdict(
    whole: tuple[float, float], paper_fall: float | None, span: str, rise_margins: list[float]
) -> Verdict:
    """``falls_along``'s verdict by the rule (module docstring), ``rise_margins`` those of the decided rises; its
    reason gives the whole fall and why it is not reproduced, if it is not, save for the rises it leaves to
    ``falls_along`` to name."""
    d, u = whole
    text = f"{span}: {_plus_minus(d, u)}"
    shown = _plus_minus(d, u)
    if paper_fall is not None:
        text += f" (paper {paper_fall:+.1f})"
    m = margin(d, 0.0, u)
    if not _decided(m):
        return Verdict("not established", f"{text}: within {SIGNIFICANT:g} uncertainties of no change", shown, m)
    if d > 0:
        return Verdict("not reproduced", f"{text}: it rises", shown, m)
    margins = [m]
    small = False
    if paper_fall is not None:
        fraction = margin(d, GAIN_FRACTION * paper_fall, u)
        margins.append(fraction)
        if not _decided(fraction):
            return Verdict(
                "not established",
                f"{text}: within {SIGNIFICANT:g} uncertainties of {GAIN_FRACTION:.0%} of the paper's fall "
                f"({GAIN_FRACTION * paper_fall:+.2f}): reproduced or partly",
                shown,
                fraction,
            )
        small = d > GAIN_FRACTION * paper_fall
    if not rise_margins and not small:
        return Verdict("reproduced", text, shown, min(margins))
    reason = f"{text}; less than {GAIN_FRACTION:.0%} of the paper's fall" if small else text
    return Verdict("partly", reason, shown, min(margins + rise_margins))


def beats(differences: Sequence[tuple[float, float]], labels: Sequence[str], names: str = "") -> Verdict:
    """Is the claimed winner better at every length? ``differences``: ``(other minus winner, u)`` (module
    docstring); ``names``: what the differences are, e.g. ``"NICE minus planar"``, to start the reason."""
    margins = [margin(d, 0.0, u) for d, u in differences]
    wins = [label for (d, _), m, label in zip(differences, margins, labels) if d > 0 and _decided(m)]
    losses = [label for (d, _), m, label in zip(differences, margins, labels) if d < 0 and _decided(m)]
    text = (f"{names}: " if names else "") + ", ".join(
        f"{label}: {_plus_minus(d, u)}" for (d, u), label in zip(differences, labels)
    )
    if losses:
        text += f"; the other way at {', '.join(losses)}"
    # the deciding comparisons: the wins (reproduced, partly), else the losses (not reproduced), else all of them;
    # the verdict's number and margin are the closest call among them
    decided = [i for i, m in enumerate(margins) if _decided(m)]
    wins_at = [i for i in decided if differences[i][0] > 0]
    deciding = wins_at or decided or list(range(len(differences)))  # decided wins, else decided losses, else all
    closest = min(deciding, key=margins.__getitem__)
    shown = _plus_minus(*differences[closest]) + (f" ({labels[closest]})" if len(labels) > 1 else "")
    if len(wins) == len(differences):
        return Verdict("reproduced", text, shown, margins[closest])
    if wins:
        return Verdict("partly", f"{text}; decided at {', '.join(wins)} only", shown, margins[closest])
    if losses:
        return Verdict("not reproduced", text, shown, margins[closest])
    return Verdict(
        "not established", f"{text}; within {SIGNIFICANT:g} uncertainties everywhere", shown, margins[closest]
    )


def with_paper_optimiser(report: Verdict, paper_optimiser: Verdict) -> Verdict:
    """The report recipe's verdict, qualified by the paper optimiser's (module docstring)."""
    if report.verdict in ("partly", "not reproduced", "not established") and paper_optimiser.verdict == "reproduced":
        return Verdict(
            "partly",
            f"only under the paper's optimiser ({paper_optimiser.reason}); our recipe: {report.reason}",
            report.ours,
            min(m for m in (report.margin, paper_optimiser.margin, math.inf) if m is not None),
        )
    return report


def shown_margin(m: float | None) -> str:
    """A margin to one decimal, or, for a decided one (above ``SIGNIFICANT``), to as many more (up to four) as keep it
    from rounding onto ``SIGNIFICANT`` (a decided 2.04 must not read as the undecided 2.0); "—" for none, "∞" for an
    exact number."""
    if m is None:
        return "—"
    if math.isinf(m):
        return "∞"
    for decimals in (1, 2, 3):
        if m <= SIGNIFICANT or float(f"{m:.{decimals}f}") != SIGNIFICANT:
            return f"{m:.{decimals}f}"
    return f"{m:.4f}"


def verdict_columns(verdict: Verdict) -> dict[str, str]:
    """A verdict as the columns of a claims table: ``ours`` (the deciding number), ``verdict``, ``margin`` and
    ``evidence``."""
    return {
        "ours": verdict.ours or "—",
        "verdict": verdict.verdict,
        "margin": shown_margin(verdict.margin),
        "evidence": verdict.reason,
    }


def verdict_rules() -> str:
    """The rules that decide the verdicts, written out from the constants the code uses (a Markdown list)."""
    return "\n".join(
        [
            "- **Uncertainty that survives retraining.** Every number that compares separately trained models "
            "comes with $u = \\sqrt{se^2 + s^2/n}$: $se$ the standard error over the test images (paired where "
            "two models are compared), $s$ the standard deviation of the same quantity over training seeds, "
            "$n$ the number of seeds the number averages (a model trained with several seeds is judged on its "
            "mean over them). Toy differences are means over seeds with $u$ from their spread.",
            f"- **Margin.** The deciding number's distance from the rule's nearest threshold, in units of $u$ "
            f"(for a rule with several numbers, the closest call). A margin of at most {SIGNIFICANT:g} decides "
            f"nothing: the verdict is then *not established*, and says between which verdicts.",
            f"- **A Table 2 number** (MNIST): ours, the importance-sampled $-\\ln p(x)$ on the test set, is "
            f"*reproduced* if it is at most {CLOSE_NATS:g} nat above the paper's (or below it), *partly* if at most "
            f"{NEAR_NATS:g} nats above, else *not reproduced*. Its $se$ is the standard error of our mean over the "
            f"test images: the paper scored the same 10,000 images, but does not say how it binarised them, so "
            f"their sampling error is not taken to cancel.",
            f"- **A quantity falls with $K$** (MNIST, from $K = 0$ to 80, or to 20 for the claim about planar "
            f"$K = 20$ against the diagonal model): *reproduced* if the paired fall is decided (more than "
            f"{SIGNIFICANT:g} $u$), is at least {GAIN_FRACTION:.0%} of the paper's fall where the paper gives one, "
            f"and no step along the ladder rises by more than {SIGNIFICANT:g} $u$; *partly* if the fall is decided "
            f"but smaller than that or a step rises; *not reproduced* if the ladder rises.",
            "- **One model beats another** (MNIST and toy): *reproduced* if it is decidedly better at every length "
            "compared, *partly* if at some, *not reproduced* if at none and decidedly worse at some. MNIST "
            "differences are paired on the same test images; toy differences are of the mean exact KL over "
            "training seeds.",
            "- **Only under the paper's optimiser** (MNIST, planar $K = 20$ against the diagonal model): a claim "
            "that fails, holds only partly or is not established under our recipe but holds with the paper's "
            "optimiser (the study's runs, validation set) is *partly*, and says so.",
            "- **Not tested**: a run the rule needs is not trained yet; where the rule compares models at several "
            "lengths, the comparisons already trained are shown as *so far*.",
            "- **Signs.** Differences of $-\\ln p(x)$ are paired on the same images and read as *A minus B*: along "
            "a ladder the longer flow minus the shorter, between two models as the evidence names them (e.g. "
            "*NICE-perm minus planar*); a negative difference means that A has the lower $-\\ln p(x)$.",
        ]
    )
