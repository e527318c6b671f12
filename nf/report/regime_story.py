"""Which story the paper's own regime supports: do its flow gains last to its full budget, or fade?

At 100,000 updates of the paper's RMSprop (learning rate ``1e-5``, momentum 0.9, constant) planar flows beat the
diagonal model by far more than under our Adam recipe.  Two stories explain that, and the paper's-regime runs
(``nf.report.paper_regime``) tell them apart at the paper's full budget:

* **The gains last** (*kept*): trained the paper's way for its 500,000 updates, the flows keep a gain of the
  paper's size; our recipe's small gains then show a stronger baseline absorbing most of it.
* **The gains fade** (*transient*): the diagonal model catches up as the slow optimiser runs on; the large gains
  at 100,000 updates belonged to slow training, not to the richer posterior.

**The rule, fixed before any flow of the regime reached its full budget** (this module was committed then), for
each of planar ``K = 20`` and ``K = 80`` (``STORY_MODELS``), with ``g(b)`` its paired gain over the diagonal model
(flow minus diagonal, on the same test images) when both have trained ``b`` updates, ``F`` the full budget and
``P`` the paper's gain for that ``K`` (Table 2):

* **kept** if ``g(F)`` is at least ``GAIN_FRACTION`` of ``P`` (below ``GAIN_FRACTION * P``) by more than
  ``SIGNIFICANT`` uncertainties ``u = sqrt(se^2 + s^2)``: ``se`` the paired standard error, ``s`` the spread over
  training seeds of a paired gain (``nf.report.mnist_verdicts.seed_noise``);
* **transient** if ``g(F)`` is above ``GAIN_FRACTION * P`` by more than ``SIGNIFICANT`` ``u`` *and* the gain has
  shrunk since the first budget point ``b_1``: ``g(F) - g(b_1)`` (per image, the four scores on the same images)
  is positive by more than ``SIGNIFICANT`` ``u`` (its ``se`` from the per-image differences, one ``s``);
* **neither decided** otherwise; **not tested** until both runs reach ``F``, with the gains so far.

**Later, before any model of the regime had a second seed**: ``s`` is the spread the regime's rules use
(``nf.report.paper_regime.regime_noise``), the larger of our recipe's and the regime's own once measured.

The story the data supports: *the gains last* if every model is *kept*, *the gains fade* if every model is
*transient*, and otherwise says which model reads which way.
"""

from __future__ import annotations

from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, gain_difference
from nf.report.mnist import model_key, paper_key
from nf.report.mnist_verdicts import SeedNoise, separately_trained
from nf.report.paper import TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.verdicts import GAIN_FRACTION, margin, with_uncertainty
from nf.runs.cache import Run

STORY_MODELS = (("planar", 20), ("planar", 80))
DIAGONAL = ("none", 0)
STORIES = {"kept": "the gains last", "transient": "the gains fade"}


def paper_gain(model: tuple[str, int]) -> float:
    """The paper's Table 2 gain of ``model`` over the diagonal model (negative: a lower ``-ln p(x)``)."""
    return TABLE2_NEG_LOG_LIKELIHOOD[paper_key(*model)] - TABLE2_NEG_LOG_LIKELIHOOD[paper_key(*DIAGONAL)]


def model_story(
    diagonal: dict[int, Run], flow: dict[int, Run], full: int, paper: float, noise: SeedNoise
) -> tuple[str, str]:
    """``(reading, evidence)`` for one flow by the module's rule: ``reading`` one of ``kept``, ``transient``,
    ``neither decided``, ``not tested``; ``diagonal``/``flow``: each run's budget points by updates (the full
    budget ``full`` once it ends); ``paper``: the paper's gain."""
    shared = sorted(set(diagonal) & set(flow))
    if not shared:
        return "not tested", "no budget point of both runs yet"
    first, last = shared[0], shared[-1]
    gains = {b: separately_trained(diagonal[b], flow[b], noise) for b in dict.fromkeys((first, last))}
    text = ", ".join(f"{d:+.2f} ± {u:.2f} at {b:,}" for b, (d, u) in gains.items())
    text = f"gain over the diagonal model {text} updates (paper {paper:+.1f})"
    if first != last:
        shrink, se = gain_difference((diagonal[first], flow[first]), (diagonal[last], flow[last]))
        shrink_u = with_uncertainty(se, noise.gain["nll"])
        text += f"; the gain changed by {shrink:+.2f} ± {shrink_u:.2f} since {first:,}"
    if last != full:
        return "not tested", f"so far {text}; the full budget is {full:,} updates"
    d, u = gains[full]
    target = GAIN_FRACTION * paper
    if margin(d, target, u) > SIGNIFICANT and d < target:
        return "kept", f"{text}: at least {GAIN_FRACTION:.0%} of the paper's gain, decidedly"
    if margin(d, target, u) <= SIGNIFICANT:
        return "neither decided", f"{text}: within {SIGNIFICANT:g} uncertainties of {GAIN_FRACTION:.0%} of the paper's"
    short = f"less than {GAIN_FRACTION:.0%} of the paper's gain, decidedly"
    if first == last:
        return "neither decided", f"{text}: {short}, but no earlier budget point shows whether it shrank"
    if shrink > 0 and margin(shrink, 0.0, shrink_u) > SIGNIFICANT:
        return "transient", f"{text}: {short}, and shrinking"
    return "neither decided", f"{text}: {short}, but not decidedly shrinking"


def story_reading(configs: list[dict[str, Any]], found: list[dict[int, Run]], noise: SeedNoise) -> str:
    """Which story the paper's-regime runs support (module docstring), as Markdown; ``configs``/``found``: the
    regime's configs and their budget points (``nf.experiments.mnist_study.regime_runs``)."""
    points = {model_key(c): (c["updates"], runs) for c, runs in zip(configs, found)}
    if DIAGONAL not in points:
        return "The paper's regime trains no diagonal model: no story can be read."
    full, diagonal = points[DIAGONAL]
    readings, parts = {}, []
    for model in STORY_MODELS:
        if model not in points:
            continue
        reading, evidence = model_story(diagonal, points[model][1], full, paper_gain(model), noise)
        readings[model] = reading
        parts.append(f"planar K={model[1]}: *{STORIES.get(reading, reading)}* ({evidence})")
    if not readings:
        return "The paper's regime trains none of the models the story is read on."
    found_readings = set(readings.values())
    if "not tested" in found_readings:
        verdict = "**Not tested yet**: the runs have not all reached the paper's full budget."
    elif found_readings == {"kept"}:
        verdict = (
            f"**{STORIES['kept'].capitalize()}**: in its own regime the paper's flow gains hold at its full budget, "
            "so our recipe's smaller gains show a stronger baseline absorbing most of them."
        )
    elif found_readings == {"transient"}:
        verdict = (
            f"**{STORIES['transient'].capitalize()}**: the diagonal model catches up as the paper's optimiser runs "
            "on, so the large gains at the first budget belonged to slow training, not to the richer posterior."
        )
    else:
        verdict = "**Neither story is decided**: the models read differently, or within the rule's uncertainty."
    return verdict + " By model: " + "; ".join(parts) + "."


def story_rule() -> str:
    """The rule of the module docstring, written out from the constants the code uses (Markdown)."""
    models = " and ".join(f"$K = {k}$" for _, k in STORY_MODELS)
    return (
        "**The rule, fixed before any flow of this regime reached its full budget.** For planar "
        f"{models}, with $g(b)$ the paired gain over the diagonal model when both have trained $b$ updates and "
        f"$P$ the paper's gain: *the gains last* for a model if $g$ at the full budget is at least "
        f"{GAIN_FRACTION:.0%} of $P$ by more than {SIGNIFICANT:g} uncertainties $u$ (the paired standard error with "
        "the spread over training seeds of a paired gain that the regime's rules use, since before any of its "
        "models had a second seed the larger of our recipe's and the regime's own); *the gains fade* if it is "
        f"short of {GAIN_FRACTION:.0%} "
        f"of $P$ by more than {SIGNIFICANT:g} $u$ and has shrunk since the first budget point by more than "
        f"{SIGNIFICANT:g} $u$ (per image, the four scores paired). The data support a story if every model reads "
        "that way."
    )
