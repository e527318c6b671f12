"""A verdict on each of the paper's toy-density claims (its Fig. 3), from the exact KL of the fitted flows.

The paper only plots its toy results, so the rules compare our exact
``KL(q_K || p)`` (``nf.experiments.toy``) between models, with the rule
``beats`` of ``nf.report.verdicts`` (fixed for the MNIST claims): a model
beats another where the difference of their mean KL over training seeds
exceeds ``SIGNIFICANT`` standard errors, ``sqrt(sd_a^2 / n_a + sd_b^2 / n_b)``
from the seeds' spread.  These rules were written after the toy runs existed;
they reuse the MNIST rule unchanged rather than a threshold chosen for them.

* **The fit improves with flow length** (Fig. 3, the columns): planar ``K``
  longest against shortest, on every target.
* **Planar beats NICE at equal length** (Fig. 3, planar against NICE rows and
  Fig. 3(d)): planar against each NICE family, on every target and length.
"""

from __future__ import annotations

import math
from typing import Any

from nf.experiments.comparisons import SIGNIFICANT
from nf.report.toy import share
from nf.report.verdicts import Verdict, beats, not_tested, verdict_columns

NICE_FAMILIES = ("nice-perm", "nice-orth")
PAPER = "shown for K = 2, 8, 32"
IMPROVES = "longer planar flows fit the toy densities better (Fig. 3)"
PLANAR_NICE = "planar flows fit better than NICE at equal length (Fig. 3, Fig. 3(d))"


def _difference(worse: dict[str, Any], better: dict[str, Any]) -> tuple[float, float]:
    """``KL(worse) - KL(better)`` and its standard error from the spread over seeds."""
    se = math.sqrt(worse["kl_sd"] ** 2 / worse["seeds"] + better["kl_sd"] ** 2 / better["seeds"])
    return worse["kl"] - better["kl"], se


def _improves(by: dict[tuple, dict[str, Any]], energies: list[str], lengths: list[int]) -> Verdict:
    if len(lengths) < 2:
        return not_tested("planar flows of two lengths")
    short, long = lengths[0], lengths[-1]
    differences = [_difference(by[(e, "planar", short)], by[(e, "planar", long)]) for e in energies]
    verdict = beats(differences, [f"{e} K={short}→{long}" for e in energies])
    return verdict.explained(f"KL drop, {verdict.reason}")


def _planar_beats_nice(by: dict[tuple, dict[str, Any]], energies: list[str], lengths: list[int]) -> Verdict:
    pairs = [(e, f, k) for e in energies for f in NICE_FAMILIES for k in lengths if (e, f, k) in by]
    if not pairs:
        return not_tested("NICE flows")
    differences = [_difference(by[(e, f, k)], by[(e, "planar", k)]) for e, f, k in pairs]
    labels = [f"{e} {f} K={k}" for e, f, k in pairs]
    better = sum(d > SIGNIFICANT * se for d, se in differences)
    worse = [f"{label} ({d:+.2f} ± {se:.2f})" for (d, se), label in zip(differences, labels) if d < -SIGNIFICANT * se]
    reason = f"planar significantly lower in {share(better, len(pairs), '(target, NICE family, K) comparisons')}"
    reason += f", significantly higher in {len(worse)}" + (f": {', '.join(worse)}" if worse else "")
    return beats(differences, labels).explained(f"KL, NICE minus planar: {reason}")


def toy_verdicts(summary: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """The toy claims with our evidence and a verdict; ``summary``: ``nf.report.toy.summarize`` of the toy
    chapter's runs (None if some are missing)."""
    if not summary:
        verdicts = [not_tested("the toy chapter's runs")] * 2
    else:
        by = {(r["energy"], r["family"], r["length"]): r for r in summary}
        energies = list(dict.fromkeys(r["energy"] for r in summary))
        lengths = sorted({k for _, f, k in by if f == "planar"})
        verdicts = [_improves(by, energies, lengths), _planar_beats_nice(by, energies, lengths)]
    return [
        {"claim": claim, "paper": PAPER, **verdict_columns(v)} for claim, v in zip((IMPROVES, PLANAR_NICE), verdicts)
    ]
