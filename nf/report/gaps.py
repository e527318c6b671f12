"""Where the gap goes: the gaps chapter's table, figure and readings, by rules stated before the analyses ran.

Per analysed model and recipe (``nf.experiments.gaps``, the same test images for every model): ``-ln p(x)``, the
amortised bound ``F``, the locally optimised bound ``F*``, the approximation gap ``F* - (-ln p)`` and the
amortisation gap ``F - F*``, means with standard errors over the images.

**The rules** (this module was committed before any analysis of a trained model existed):

* **A flow changes a gap** when the gap of the flow model minus that of the diagonal model of the same recipe,
  paired on the same images, is beyond ``SIGNIFICANT`` uncertainties ``u = sqrt(se^2 + s^2)``: ``se`` the paired
  standard error over the images, ``s`` the spread over training seeds of a paired difference of the inference
  gap (the KL of the MNIST chapter, ``nf.report.mnist_verdicts.seed_noise``: the closest quantity measured over
  seeds), since the two models were trained separately.  *Smaller*, *larger*, or *no decided change*.
* **Which gap flows close**, per recipe, is read at the longest analysed planar flow: the gap that is decidedly
  *smaller* there is the one flows close; both, or neither, are said as such.
* **The decoder's side**: on each diagonal model's fixed decoder, a planar flow fitted per image recovers part of
  that model's approximation gap, ``F*_diag - F*_planar``.  If it recovers decidedly less than ``HALF`` of the gap
  (the per-image ``recovered - HALF * gap``, beyond ``SIGNIFICANT`` paired standard errors), the decoder has made
  its own posterior nearly as simple as the diagonal family; decidedly more, the family limits the model; else not
  established.  The fit's share of converged images is shown beside it: an unconverged fit recovers less.

**Added after the first analysis (the paper's-regime diagonal model) had run, before its check**:

* **Convergence, checked.**  Each analysis is repeated on its first images with a longer local optimisation
  (more cuts of the step size, more steps: the chapter's ``check``).  The standard fit has *converged* if the
  longer one lowers ``F*`` (and the decoder's fitted planar bound), on average over those images, by no more
  than the larger of ``SIGNIFICANT`` paired standard errors and the bound's own Monte Carlo error per image
  (``convergence``); otherwise the gaps it gives are *not converged*, and say by how much.

**Changed after the first flow model's analysis (the paper's-regime planar K=20), before any other flow model's**:

* **The estimate of ``-ln p(x)``** is the lowest of the estimates with every posterior the analysis has as the
  proposal (``nf.experiments.gaps``), no longer the amortised posterior's alone; an image counts as "F* below
  -ln p(x)" when it lies below by more than twice the two estimates' combined standard error.  Every analysis was
  made again with it; the rules above are unchanged.

**Changed again after four analyses (both recipes' diagonal models and planar K=20), before any other**:

* **The estimate of ``-ln p(x)``** takes the same three proposals for every model (the amortised posterior, the
  model's own family fitted per image, a planar flow fitted per image on its decoder), and chooses among them per
  image on draws independent of the estimate (``nf.experiments.gaps``: cross-fitted halves), no longer the lowest
  of the estimates on the same draws, which favoured an estimate that came out low by chance and gave the diagonal
  models one proposal more.  The check table counts the images where the two fitted proposals disagree.  Every
  analysis was made again with it; the rules above are unchanged.

**Added after the first check that said no (our recipe's planar K=80), before its refit**:

* **Refitted where not converged.**  An analysis whose check says no is made again on every image with the
  check's fit, and that refit is checked with the next, longer fit (``GapLevel``; the chapter's ``check["fits"]``);
  the chapter reads the refit once it is made, and the table keeps every fit's check.  The fits end with the
  chapter's longest; an analysis whose check with that says no is read as *not converged*, by how much shown.

**Added after the longest fit had been tried on the other analyses (its results seen), before the chapter read it**:

* **Checked with the longest fit, read one way where not converged.**  An analysis whose check passes before the
  longest fit is checked with the longest fit too, and is not refitted with it (a refit on every image costs several
  times the analysis).  A fit that has not converged leaves its bound too high, so the approximation gap it gives
  (``F* + ln p``) too large and the amortisation gap (``F - F*``) too small.  A decided change from the diagonal
  model (the first rule) stands only in the direction that error can only understate (``ROBUST``): with the flow
  model's ``F*`` not converged, a smaller approximation gap or a larger amortisation gap; with the diagonal model's,
  a larger approximation gap or a smaller amortisation gap; with both, neither.  Otherwise it is *not established*.
  On the decoder's side, with the planar fit not converged only "more than half" can stand, with the diagonal
  model's ``F*`` not converged only "less than half".  The rule can withdraw a call, never make one; a "no decided
  change" beside an unconverged fit says which change the fit may hide.

**Added after every analysis made (6 of 7 models) had been checked with the longest fit, and none had converged
by it (for 4 of them ``F*`` had not converged, and for all 6 the planar bound had not; their lowering seen), before
any analysis was checked with the new one**:

* **A longer check fit.**  The chapter's ``check["fits"]`` gains a fit with chunks four times longer, to measure
  how much further the bounds fall.  This changes the two rules before it: an analysis whose check passed before
  the longest fit is checked with every longer fit, not only the longest (so no check already made leaves the
  table), and the refits of the refit rule continue to the new fit.  A model's convergence is read from its check
  with the longest fit made so far (``convergence_caveats``).  The other rules are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch

from nf.experiments.comparisons import SIGNIFICANT
from nf.experiments.gaps import PROPOSALS, mean_se
from nf.models.local_bound import LocalFit
from nf.report.mnist import paper_key
from nf.report.mnist_verdicts import SeedNoise
from nf.report.nice import model_label
from nf.report.paper import TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.verdicts import GAIN_FRACTION
from nf.runs.cache import Run

HALF = 0.5
NOT_ANALYSED = "not analysed yet"
GAP_COLUMNS = ("−ln p(x)", "F(x)", "F*(x)", "approximation gap", "amortisation gap")
CHECK_COLUMNS = (
    "bias of −ln p(x)",
    "amortised excess",
    "chosen: amortised / own / planar",
    "fitted proposals disagree (own − planar)",
    "stopped by its rule",
    "F* below −ln p(x): kept / amortised estimate",
)
DIAGONAL = ("none", 0)
LOCAL, PLANAR = "F*(x)", "planar bound"  # the labels of the two fitted bounds in ``convergence`` and ``Caveat``
Entry = tuple[str, tuple[str, int], Run | None]  # (recipe, model, analysis)


def gap_rules() -> str:
    """The rules of the module docstring, written out from the constants the code uses (a numbered Markdown list)."""
    return "\n".join(
        [
            f"1. **A flow changes a gap** when the flow model's gap minus the diagonal model's (same recipe, paired "
            f"on the same images) is beyond {SIGNIFICANT:g} uncertainties $u = \\sqrt{{se^2 + s^2}}$: $se$ the paired "
            "standard error over the images, $s$ the spread over training seeds of a paired difference of the "
            "inference gap (the KL), measured by the MNIST chapter, since the two models were trained separately. "
            "*Smaller*, *larger*, or *no decided change*.",
            "2. **Which gap flows close**, per recipe, is read at the longest analysed planar flow: the gap that is "
            "decidedly smaller there.",
            f"3. **The decoder's side.** On a diagonal model's fixed decoder, a planar flow fitted to each image "
            f"recovers part of that model's approximation gap. Decidedly less than {HALF:.0%} of it (per image, "
            f"recovered minus {HALF:g} times the gap, beyond {SIGNIFICANT:g} paired standard errors): the decoder has "
            "made its posterior nearly as simple as the diagonal family. Decidedly more: the family, not the "
            "decoder, limits the bound. Otherwise not established.",
            "4. **Convergence, checked** (added after the first analysis, the paper's-regime diagonal model, had run, "
            "before its check). Each analysis is repeated on its first images with a longer local optimisation. The "
            "standard fit has converged if the longer one lowers $\\mathcal F^*$ (and the decoder's fitted planar "
            f"bound) on average by no more than the larger of {SIGNIFICANT:g} paired standard errors and the bound's "
            "own Monte Carlo error per image.",
            "5. **The estimate of $-\\ln p(x)$, changed** after the first flow model's analysis (the paper's-regime "
            "planar K=20), before any other flow model's: the lowest of the estimates with every posterior the "
            "analysis has as the proposal, no longer the amortised posterior's alone; an image counts as "
            "$\\mathcal F^*$ below $-\\ln p(x)$ when it lies below by more than twice the two estimates' combined "
            "standard error. Every analysis was made again with it; the rules above are unchanged.",
            "6. **The estimate of $-\\ln p(x)$, changed again** after four analyses (both recipes' diagonal models "
            "and planar K=20), before any other: the same three proposals for every model (the amortised posterior, "
            "the model's own family fitted to each image, a planar flow fitted to each image on its decoder), chosen "
            "per image on half of the draws and scored on the other half (both ways, averaged), so that no estimate "
            "is kept for having come out low by chance; the checks count the images where the two fitted proposals "
            "disagree. Every analysis was made again with it; the rules above are unchanged.",
            "7. **Refitted where not converged**, added after the first check that said no (our recipe's planar "
            "K=80), before its refit: an analysis whose check says no is made again on every image with the check's "
            "fit, and that refit is checked with the next, longer fit; the chapter reads the refit once it is made, "
            "and the convergence table keeps every fit's check. Where the longest fit's check says no, the analysis "
            "is read as not converged, by how much shown.",
            "8. **Checked with the longest fit, read one way where not converged**, added after the longest fit had "
            "been tried on the diagonal models and planar K=20 of both recipes (their results seen), before the "
            "chapter read those checks and before NICE-perm K=80's ran: an analysis whose check passes before the "
            "longest fit is checked with the longest fit too, and not refitted with it (a refit of every image costs "
            "several times the analysis). A fit that "
            "has not converged leaves its bound too high, so its approximation gap too large and its amortisation "
            "gap too small: a decided change (rule 1) stands only in the direction that error can only understate "
            "(the flow's $\\mathcal F^*$ not converged: a smaller approximation gap or a larger amortisation gap; "
            "the diagonal model's: the reverse; both: neither), else it is *not established*. On the decoder's side "
            "(rule 3), with the planar fit not converged only *more than half* can stand, with the diagonal model's "
            "$\\mathcal F^*$ not converged only *less than half*. The rule can withdraw a call, never make one; a "
            "*no decided change* beside an unconverged fit says which change the fit may hide.",
            "9. **A longer check fit**, added after every analysis made (6 of 7 models) had been checked with the "
            "fit of 400-step chunks and none had converged by it (for 4 of them $\\mathcal F^*$ had not converged, and "
            "for all 6 the planar bound had not; their lowering seen), before any analysis was checked with the new "
            "one: a third check fit with chunks four times longer, to measure how much further the bounds fall. "
            "This changes rules 7 and 8: an analysis whose check passed before the longest fit is checked with every "
            "longer fit, not only the longest (so no check already made leaves the table), and rule 7's refits "
            "continue to the new fit. A model's convergence is read from its check with the longest fit made so "
            "far. The other rules are unchanged.",
        ]
    )


def convergence(analysis: Run, check: Run) -> dict[str, tuple[tuple[float, float], float, float]]:
    """The convergence rule (module docstring) for ``analysis`` and its ``check`` (the same analysis on its first
    images with a longer fit): per bound (``F*(x)``, ``planar bound``), how much the longer fit lowers it, paired on
    the same images (mean, se), the bound's Monte Carlo error per image, and how far the lowering lies beyond what
    the rule allows (zero or less: converged)."""
    n = check.config["images"]
    standard, longer = analysis.load_tensors("scores.pt"), check.load_tensors("scores.pt")
    found = {}
    for bound, label in (("local_bound", LOCAL), ("planar_bound", PLANAR)):
        lowered = mean_se(standard[bound][:n] - longer[bound])
        error = longer[f"{bound}_se"].mean().item()
        found[label] = (lowered, error, lowered[0] - max(SIGNIFICANT * lowered[1], error))
    return found


def converged(analysis: Run, check: Run) -> bool:
    """Whether both of ``analysis``'s fits have converged by the rule (``convergence``)."""
    return all(beyond <= 0 for _, _, beyond in convergence(analysis, check).values())


class GapLevel(NamedTuple):
    """One fit of a model's analysis and one check of it with a longer fit (configs as
    ``nf.experiments.gaps.gap_config``, runs None until made).  A model's levels run from the standard fit, each
    checked with the next, up to the first whose check passes (``converged``), whose analysis is then checked with
    every longer fit too (rules 8 and 9), or to the longest fit the chapter has."""

    analysis_config: dict[str, Any]
    check_config: dict[str, Any]
    analysis: Run | None
    check: Run | None


Levels = tuple[str, tuple[str, int], list[GapLevel]]  # (recipe, model, its levels in order)


class Caveat(NamedTuple):
    """Why a model's analysis is not read as converged: per bound that a longer fit lowers beyond the rule
    (``"F*(x)"``, ``"planar bound"``), by how much (``lowered``); empty if the analysis is not checked yet."""

    lowered: tuple[tuple[str, float], ...] = ()

    @property
    def bounds(self) -> frozenset[str]:
        """The bounds not converged."""
        return frozenset(label for label, _ in self.lowered)

    def lowered_by(self, bound: str) -> float:
        """How much a longer fit lowers ``bound`` (one of ``bounds``)."""
        return dict(self.lowered)[bound]

    def note(self, bounds: frozenset[str] | None = None) -> str:
        """The caveat in words, about ``bounds`` only (default: all)."""
        if not self.lowered:
            return "not checked for convergence yet"
        told = [f"{label} by {value:.2f}" for label, value in self.lowered if bounds is None or label in bounds]
        return f"not converged: a longer fit lowers {' and '.join(told)} more on the checked images"


Caveats = dict[tuple[str, tuple[str, int]], Caveat]  # (recipe, model) -> its caveat


def _caveat_of(caveats: Caveats | None, recipe: str, model: tuple[str, int]) -> Caveat | None:
    """``model``'s convergence caveat under ``recipe`` (None if it has none)."""
    return (caveats or {}).get((recipe, model))


def read_analyses(models: list[Levels]) -> list[Entry]:
    """Per model, the analysis the chapter reads: that of its longest fit made so far (None if none is)."""
    entries = []
    for recipe, model, levels in models:
        made = [level.analysis for level in levels if level.analysis is not None]
        entries.append((recipe, model, made[-1] if made else None))
    return entries


def analyses_done(models: list[Levels]) -> str:
    """How many of the models are analysed, which wait for a refit with a longer fit, and which are not analysed
    yet (Markdown)."""
    read = read_analyses(models)
    done = sum(run is not None for _, _, run in read)
    refits = [
        f"{model_label(model)}, {recipe}"
        for recipe, model, levels in models
        if len(levels) > 1 and not levels[-1].analysis
    ]
    missing = [f"{model_label(model)}, {recipe}" for recipe, model, run in read if run is None]
    return (
        f"*{done} of {len(models)} models analysed"
        + (
            f"; read with an earlier fit while a refit with a longer one waits (its check said no): {'; '.join(refits)}"
            if refits
            else ""
        )
        + (f"; not analysed yet: {'; '.join(missing)}" if missing else "")
        + ".*"
    )


def convergence_caveats(models: list[Levels]) -> Caveats:
    """Per ``(recipe, model)`` whose analysis read by the chapter (``read_analyses``) has not passed its check with
    the longest fit made so far: "not checked yet", or how much further that check's fit lowers ``F*`` (and the
    planar bound) beyond the rule, for the readings to carry."""
    caveats = {}
    for recipe, model, levels in models:
        made = [level for level in levels if level.analysis is not None]
        if not made:
            continue
        checked = [level for level in made if level.analysis.key == made[-1].analysis.key and level.check is not None]
        if not checked:
            caveats[(recipe, model)] = Caveat()
            continue
        level = checked[-1]  # rule 9: the check with the longest fit made so far
        found = convergence(level.analysis, level.check)
        failed = tuple((label, lowered[0]) for label, (lowered, _, beyond) in found.items() if beyond > 0)
        if failed:
            caveats[(recipe, model)] = Caveat(failed)
    return caveats


def _fit_label(config: dict[str, Any]) -> str:
    fit = config["fit"]
    chunks = "" if fit["check_every"] == LocalFit.check_every else f", {fit['check_every']:,}-step chunks"
    return f"{fit['rate_cuts']} cuts{chunks}, ≤ {fit['max_steps']:,} steps"


def _short_fit_label(config: dict[str, Any]) -> str:
    """``_fit_label`` for a table cell: cuts, steps per chunk, most steps."""
    fit = config["fit"]
    return f"{fit['rate_cuts']} · {fit['check_every']} · {fit['max_steps']:,}"


FIT_COLUMN = "fit: cuts · chunk · steps"
CONVERGENCE_COLUMNS = (
    FIT_COLUMN,
    "check's fit",
    "F*(x) lowered by (its Monte Carlo error)",
    "planar bound lowered by (its error)",
    "converged",
    "−ln p(x) lowered",
)


def longest_fit_note(models: list[Levels]) -> str:
    """Which analysed models have been checked with the chapter's longest fit (the last level's check, made) and
    which not yet, and, per bound, for which of them that check finds it converged; then the same for the models
    not yet checked with it, by their check with the longest fit made so far (rule 9), grouped by that fit
    (Markdown; empty if none is checked)."""
    checked = [(recipe, model, levels) for recipe, model, levels in models if levels and levels[0].check is not None]
    if not checked:
        return ""
    longest = max((level.check_config["fit"] for _, _, levels in checked for level in levels), key=_fit_order)
    latest = {(r, m): [level for level in levels if level.check is not None][-1] for r, m, levels in checked}
    at_longest = {key: level for key, level in latest.items() if level.check_config["fit"] == longest}
    waiting = {key: level for key, level in latest.items() if key not in at_longest}
    label = _fit_label({"fit": longest})
    text = f"Checked with the chapter's longest fit ({label}): " + (
        f"{len(at_longest)} of {len(checked)} analysed models. By that check {_converged_for(at_longest)}."
        if at_longest
        else "none yet."
    )
    if waiting:
        text += f" Not yet checked with it: {'; '.join(f'{model_label(m)}, {r}' for r, m in waiting)}."
    for order in sorted({_fit_order(level.check_config["fit"]) for level in waiting.values()}, reverse=True):
        group = {key: level for key, level in waiting.items() if _fit_order(level.check_config["fit"]) == order}
        fit_label = _fit_label(next(iter(group.values())).check_config)
        whose = "its" if len(group) == 1 else "their"
        text += f" By {whose} longest check so far, with {fit_label}, {_converged_for(group)}."
    return text


def _converged_for(checks: dict[tuple[str, tuple[str, int]], GapLevel]) -> str:
    """``F*(x) has converged for 2 of them (...) and the planar bound for none``, by each level's check."""
    found = {key: convergence(level.analysis, level.check) for key, level in checks.items()}
    parts = []
    for bound in (LOCAL, PLANAR):
        passed = [f"{model_label(m)}, {r}" for (r, m), f in found.items() if f[bound][2] <= 0]
        parts.append(f"{len(passed)} of them ({'; '.join(passed)})" if passed else "none")
    return f"{LOCAL} has converged for {parts[0]} and the planar bound for {parts[1]}"


def _fit_order(fit: dict[str, Any]) -> tuple[int, int, int]:
    return fit["rate_cuts"], fit["check_every"], fit["max_steps"]


def _nll_lowered(analysis: Run, check: Run) -> tuple[float, float]:
    """How much the check's estimate of ``-ln p(x)`` (its proposals fitted longer) lies below the analysis's, paired
    on the checked images: the approximation gap moves by ``F*``'s lowering minus this (no rule; rule 8's reading
    of the approximation gap assumes it small)."""
    longer = check.load_tensors("scores.pt")["nll"]
    return mean_se(analysis.load_tensors("scores.pt")["nll"][: len(longer)] - longer)


def convergence_table(models: list[Levels]) -> list[dict[str, str]]:
    """Per model and fit (``GapLevel``): how much the check's longer fit lowers ``F*`` and the decoder's planar
    bound, paired on the same images, with each bound's Monte Carlo error, and whether both converged by the rule
    of the module docstring (else which not, and by how much beyond it), and how much the estimate of ``-ln p(x)``
    moves with the longer fit's proposals (``_nll_lowered``); a fit whose check says no is followed by
    its refit's row (the longer fit on every image), "refit waiting" until that is made."""
    rows = []
    for recipe, model, levels in models:
        if not levels or levels[0].analysis is None:
            continue
        for level in levels:
            head = {
                "model": f"{model_label(model)}, {recipe}",
                FIT_COLUMN: _short_fit_label(level.analysis_config),
                "check's fit": _short_fit_label(level.check_config),
            }
            if level.analysis is None or level.check is None:
                state = "refit waiting" if level.analysis is None else "not checked yet"
                rows.append({**head, **dict.fromkeys(CONVERGENCE_COLUMNS[2:], "—"), "converged": state})
                continue
            found = convergence(level.analysis, level.check)
            lowered = [f"{lowered[0]:.3f} ± {lowered[1]:.3f} ({error:.3f})" for lowered, error, _ in found.values()]
            failed = [f"{label} {beyond:.3f} beyond" for label, (_, _, beyond) in found.items() if beyond > 0]
            nll = _nll_lowered(level.analysis, level.check)
            values = (*lowered, f"no: {'; '.join(failed)}" if failed else "yes", f"{nll[0]:.3f} ± {nll[1]:.3f}")
            rows.append({**head, **dict(zip(CONVERGENCE_COLUMNS[2:], values))})
    return rows


class Retraining(NamedTuple):
    """An analysed model whose parameters came from a retraining (``nf.experiments.trained``): its recipe and model,
    the scored run's and the retraining's test ``-ln p(x)``, their difference, both trainings' code versions, and the
    spread over training seeds of a difference of ``-ln p(x)`` between two trainings (``SeedNoise.gain``)."""

    recipe: str
    model: tuple[str, int]
    cached: float
    retrained: float
    difference: float
    code: str
    spread: float

    @property
    def within(self) -> bool:
        """Whether the retraining lies within the seed spread of the scored run: as good a stand-in as another seed."""
        return abs(self.difference) <= self.spread


def retrainings(entries: list[Entry], noise: SeedNoise, results_dir: Any = None) -> list[Retraining]:
    """The analysed runs whose parameters came from a retraining, in ``entries``' order: training is deterministic
    for one version of the code, so a run trained with an earlier version may retrain to a slightly different model."""
    from nf.experiments.trained import parameters_entry
    from nf.runs.cache import lookup

    found = []
    for recipe, model, run in entries:
        mnist_run = None if run is None else lookup("mnist", run.config["run"], results_dir)
        entry = None if mnist_run is None else parameters_entry(mnist_run, results_dir)
        if entry is None:
            continue
        check = entry.metrics
        (key,) = [k for k in check["cached"] if k.endswith("_nll")]
        code = f"{mnist_run.provenance['git_commit'][:7]} → {entry.provenance['git_commit'][:7]}"
        found.append(
            Retraining(
                recipe,
                model,
                check["cached"][key],
                check["retrained"][key],
                check["difference"][key],
                code,
                noise.gain["nll"],
            )
        )
    return found


def retrain_table(retrained: list[Retraining]) -> list[dict[str, str]]:
    """The retrained analysed models (``retrainings``): the cached and the retrained test ``-ln p(x)``, their
    difference, the code versions of both trainings, and whether the difference lies within the seed spread."""
    return [
        {
            "model": model_label(r.model),
            "recipe": r.recipe,
            "cached −ln p(x)": f"{r.cached:.4f}",
            "retrained": f"{r.retrained:.4f}",
            "difference": f"{r.difference:+.4f}" if r.difference else "0 (identical)",
            "code (cached → retrained)": r.code,
            "difference within one seed spread (s)": ("yes" if r.within else "no") + f" (s = {r.spread:.2f})",
        }
        for r in retrained
    ]


def _retrain_note(retrained: list[Retraining], recipe: str) -> str:
    """For ``recipe``'s analysed models retrained outside the seed spread: which, by how much, and how to read their
    gaps, as a sentence after a space ('' if none)."""
    outside = [r for r in retrained if r.recipe == recipe and not r.within]
    if not outside:
        return ""
    models = "; ".join(
        f"{model_label(r.model)}, {r.difference:+.2f} nats from the scored run against a seed spread of {r.spread:.2f}"
        for r in outside
    )
    return (
        f" Retrained outside the seed spread: {models} ({{ref}}`sec-gaps-retrained`); "
        f"{'its gaps are those of a nearby model' if len(outside) == 1 else 'their gaps are those of nearby models'} "
        "of the same config, not of the run the MNIST chapter scores."
    )


def _scores(run: Run) -> dict[str, torch.Tensor]:
    scores = run.load_tensors("scores.pt")
    return {
        **scores,
        "approximation": scores["local_bound"] - scores["nll"],
        "amortisation": scores["bound"] - scores["local_bound"],
    }


def _decoder_gain(s: dict[str, torch.Tensor]) -> tuple[tuple[float, float], tuple[float, float]]:
    """How far the planar flow fitted on the decoder lowers ``F*`` of the model's own family, and the approximation
    gap, each as ``(mean, se)`` over the images (``s``: ``_scores``)."""
    return mean_se(s["local_bound"] - s["planar_bound"]), mean_se(s["approximation"])


def _pm(value: tuple[float, float]) -> str:
    return f"{value[0]:.2f} ± {value[1]:.2f}"


def _signed(value: tuple[float, float]) -> str:
    return f"{value[0]:+.2f} ± {value[1]:.2f}"


def gap_table(entries: list[Entry]) -> list[dict[str, str]]:
    """One row per analysis: model, recipe, ``-ln p(x)``, ``F``, ``F*`` and the two gaps, ± standard errors over the
    images."""
    rows = []
    for recipe, model, run in entries:
        row = {"model": model_label(model), "recipe": recipe}
        if run is None:
            rows.append({**row, **dict.fromkeys(GAP_COLUMNS, "—"), "−ln p(x)": NOT_ANALYSED})
            continue
        m, s = run.metrics, _scores(run)
        values = (
            (m["nll"], m["nll_se"]),
            (m["bound"], m["bound_se"]),
            (m["local_bound"], m["local_bound_se"]),
            mean_se(s["approximation"]),
            mean_se(s["amortisation"]),
        )
        rows.append({**row, **{column: _pm(v) for column, v in zip(GAP_COLUMNS, values)}})
    return rows


def check_table(entries: list[Entry]) -> list[dict[str, str]]:
    """One row per analysis done (``nf.experiments.gaps``): the estimate's remaining bias (the cross-fitted estimate
    from a quarter of the draws minus that from half), how far the amortised posterior's estimate alone lies above
    the one kept, how often each proposal was chosen, the images where the two fitted proposals disagree beyond
    twice their combined standard error (with their mean difference, the model's own family minus the planar
    flow), the share of images whose local fit converged, and the images whose ``F*`` lies below ``-ln p(x)`` by
    more than twice their combined standard error, and below the amortised posterior's estimate alone by more than
    twice ``F*``'s standard error (the check as it stood before the estimate first changed)."""
    rows = []
    for recipe, model, run in entries:
        if run is None:
            continue
        m = run.metrics
        images = run.config["images"]
        values = (
            f"{m['nll_bias']:.3f}",
            _pm((m["nll_amortised_excess"], m["nll_amortised_excess_se"])),
            " / ".join(f"{m[f'chosen_{p}']:.0%}" for p in PROPOSALS),
            f"{m['proposals_disagree']} of {images:,} "
            f"({m['proposal_difference']:+.2f} ± {m['proposal_difference_se']:.2f})",
            f"{m['converged']:.0%}",
            f"{m['below_nll']} / {m['below_amortised_nll']} of {images:,}",
        )
        rows.append({"model": model_label(model), "recipe": recipe, **dict(zip(CHECK_COLUMNS, values))})
    return rows


def gap_change(flow: Run, diagonal: Run, gap: str, noise: SeedNoise) -> tuple[float, float]:
    """The flow model's ``gap`` (``approximation`` or ``amortisation``) minus the diagonal model's, paired on the
    same images, with ``u = sqrt(se^2 + s^2)`` (module docstring)."""
    d, se = mean_se(_scores(flow)[gap] - _scores(diagonal)[gap])
    return d, math.sqrt(se**2 + noise.gain["kl"] ** 2)


def _called(d: tuple[float, float]) -> str:
    if abs(d[0]) <= SIGNIFICANT * d[1]:
        return "no decided change"
    return "smaller" if d[0] < 0 else "larger"


ROBUST = {  # per gap and model whose F* has not converged: the only change from the diagonal model that can stand
    ("approximation", "flow"): "smaller",
    ("amortisation", "flow"): "larger",
    ("approximation", "diagonal"): "larger",
    ("amortisation", "diagonal"): "smaller",
}


def _open(caveats: Caveats | None, recipe: str, model: tuple[str, int], bound: str = LOCAL) -> bool:
    """Whether ``bound`` of ``model``'s analysis has not converged by its check (``convergence_caveats``)."""
    return bound in (_caveat_of(caveats, recipe, model) or Caveat()).bounds


def gap_call(
    change: tuple[float, float], gap: str, recipe: str, model: tuple[str, int], caveats: Caveats | None = None
) -> str:
    """The first rule's call of the flow ``model``'s change in ``gap`` from the diagonal model (``gap_change``),
    kept by rule 8 only in the direction an unconverged ``F*`` can only understate (``ROBUST``), else "not
    established"."""
    call = _called(change)
    sides = [side for side, m in (("flow", model), ("diagonal", DIAGONAL)) if _open(caveats, recipe, m)]
    if call == "no decided change" and sides:  # the unconverged fit may hide a change in its direction
        hidden = " or ".join(sorted({ROBUST[(gap, side)] for side in sides}, reverse=True))
        return f"no decided change as measured; the unconverged {' and '.join(sides)} fit may hide a {hidden} gap"
    if call == "no decided change" or all(ROBUST[(gap, side)] == call for side in sides):
        return call
    return f"{call} as measured, not established: {' and '.join(sides)} not converged"


def _by_recipe(entries: list[Entry]) -> dict[str, dict[tuple[str, int], Run]]:
    """The analysed models of each recipe, in the entries' order."""
    found: dict[str, dict[tuple[str, int], Run]] = {}
    for recipe, model, run in entries:
        found.setdefault(recipe, {})
        if run is not None:
            found[recipe][model] = run
    return found


def _changes(flow: Run, diagonal: Run, noise: SeedNoise) -> dict[str, tuple[float, float]]:
    return {gap: gap_change(flow, diagonal, gap, noise) for gap in ("approximation", "amortisation")}


def _longest_planar(found: dict[tuple[str, int], Run]) -> tuple[str, int] | None:
    """The longest analysed planar flow of a recipe's analyses, if the diagonal model is analysed too; else None."""
    planar = [m for m in found if m[0] == "planar"]
    return max(planar, key=lambda m: m[1]) if planar and DIAGONAL in found else None


def _longest_pairs(entries: list[Entry]) -> Iterator[tuple[str, tuple[str, int], Run, Run]]:
    """Per recipe with its diagonal model and a planar flow analysed: the recipe, its longest analysed planar flow
    (``_longest_planar``), that flow's analysis and the diagonal model's."""
    for recipe, found in _by_recipe(entries).items():
        longest = _longest_planar(found)
        if longest is not None:
            yield recipe, longest, found[longest], found[DIAGONAL]


def _caveat(caveats: Caveats | None, recipe: str, *models: tuple[str, int]) -> str:
    """The convergence caveats (``convergence_caveats``) of ``models`` of ``recipe`` about ``F*``, the bound the
    gaps are made of, in brackets ('' if none)."""
    about = frozenset({LOCAL})
    found = [(m, c) for m in models if (c := _caveat_of(caveats, recipe, m)) is not None]
    notes = [f"{model_label(m)} {c.note(about)}" for m, c in found if not c.lowered or LOCAL in c.bounds]
    return f" ({'; '.join(notes)})" if notes else ""


def which_gap_closes(
    found: dict[tuple[str, int], Run], noise: SeedNoise, recipe: str = "", caveats: Caveats | None = None
) -> str | None:
    """The gap (or gaps) decidedly smaller at the longest analysed planar flow than at the diagonal model of the
    same recipe (``found``: the recipe's analyses by model), and any decidedly larger, as a sentence with the
    convergence caveats of both models (``caveats``, of ``recipe``); None without both analyses."""
    longest = _longest_planar(found)
    if longest is None:
        return None
    changes = _changes(found[longest], found[DIAGONAL], noise)
    calls = {gap: gap_call(d, gap, recipe, longest, caveats) for gap, d in changes.items()}
    smaller = [gap for gap, call in calls.items() if call == "smaller"]
    larger = [gap for gap, call in calls.items() if call == "larger"]
    return (
        f"At the longest planar flow analysed so far ({model_label(longest)}) the flow closes "
        + (" and ".join(f"the {gap} gap" for gap in smaller) if smaller else "neither gap decidedly")
        + (" and widens " + " and ".join(f"the {gap} gap" for gap in larger) if larger else "")
        + _caveat(caveats, recipe, DIAGONAL, longest)
        + "."
    )


def gap_reading(
    entries: list[Entry],
    noise: SeedNoise,
    caveats: Caveats | None = None,
    retrained: list[Retraining] | None = None,
) -> str:
    """Per recipe: each flow model's change in both gaps from the diagonal model, and which gap the longest planar
    flow closes, by the module's rules, with the convergence caveats (``convergence_caveats``) and a note on any
    model retrained outside the seed spread (``retrainings``) (Markdown)."""
    text = []
    for recipe, found in _by_recipe(entries).items():
        diagonal = found.get(DIAGONAL)
        flows = [m for m in found if m != DIAGONAL]
        if diagonal is None or not flows:
            waiting = "a flow model's analysis" if diagonal is not None else "the diagonal model's analysis"
            text.append(f"**{recipe.capitalize()}**: which gap flows close is not read yet; it needs {waiting}.")
            continue
        parts = []
        for model in flows:
            changes = _changes(found[model], diagonal, noise)
            gaps = ", ".join(
                f"{gap} gap {d:+.2f} ± {u:.2f} ({gap_call((d, u), gap, recipe, model, caveats)})"
                for gap, (d, u) in changes.items()
            )
            parts.append(f"{model_label(model)}: {gaps}")
        closes = which_gap_closes(found, noise, recipe, caveats)
        text.append(
            f"**{recipe.capitalize()}**, each flow minus the diagonal model (paired, nats): "
            + "; ".join(parts)
            + "."
            + (f" {closes}" if closes else "")
            + _retrain_note(retrained or [], recipe)
        )
    return "\n\n".join(text)


DECOMPOSITION = {  # a flow model's gain over the diagonal model in the bound, term by term (per image, exactly)
    "bound F(x)": ("bound", "bound"),
    "−ln p(x)": ("nll", "nll"),
    "approximation gap": ("approximation", "kl"),
    "amortisation gap": ("amortisation", "kl"),
}


def gain_decomposition(entries: list[Entry], noise: SeedNoise) -> list[dict[str, str]]:
    """Per recipe and analysed flow model, its bound minus the diagonal model's, split exactly per image into the
    change of ``-ln p(x)`` (a better model), of the approximation gap (the family at its best) and of the
    amortisation gap (the encoder): ``F = -ln p + (F* + ln p) + (F - F*)``.  Each paired on the same images, with
    ``u = sqrt(se^2 + s^2)``, ``s`` the seed spread of a gain in the bound, in ``-ln p(x)``, or in the KL (for
    the gaps, as ``gap_change``)."""
    rows = []
    for recipe, found in _by_recipe(entries).items():
        diagonal = found.get(DIAGONAL)
        if diagonal is None:
            continue
        d = _scores(diagonal)
        for model in (m for m in found if m != DIAGONAL):
            f = _scores(found[model])
            row = {"flow minus diagonal": model_label(model), "recipe": recipe}
            for column, (key, spread) in DECOMPOSITION.items():
                change = _with_spread(mean_se(f[key] - d[key]), noise.gain[spread])
                row[column] = _signed(change)
            rows.append(row)
    return rows


def decomposition_reading(entries: list[Entry], noise: SeedNoise, caveats: Caveats | None = None) -> str:
    """Per recipe, at its longest analysed planar flow: the flow's change of the bound as the sum of its three parts
    (``gain_decomposition``'s means), the encoder's part called as in the rules (``gap_change``), with the
    convergence caveats (Markdown)."""
    text = []
    for recipe, longest, flow, diagonal in _longest_pairs(entries):
        f, d = _scores(flow), _scores(diagonal)
        change = {key: (f[key] - d[key]).mean().item() for key, _ in DECOMPOSITION.values()}
        encoder = gap_change(flow, diagonal, "amortisation", noise)
        text.append(
            f"**{recipe.capitalize()}**, {model_label(longest)} minus the diagonal model: the bound changes by "
            f"{change['bound']:+.2f} = {change['nll']:+.2f} (a better model, $-\\ln p(x)$) "
            f"{change['approximation']:+.2f} (the family at its best, the approximation gap) "
            f"{change['amortisation']:+.2f} (the encoder, the amortisation gap: "
            f"{gap_call(encoder, 'amortisation', recipe, longest, caveats)}) nats"
            + _caveat(caveats, recipe, DIAGONAL, longest)
            + "."
        )
    return "\n\n".join(text)


ESTIMATES = {  # -ln p(x) per image from the stored per-proposal estimates (nf.experiments.gaps)
    "kept (chosen on other draws)": lambda s: s["nll"],
    "lowest of the three (chosen on the same draws)": lambda s: torch.stack([s[f"nll_{p}"] for p in PROPOSALS]).amin(0),
    "model's own family fitted, alone": lambda s: s["nll_local"],
    "planar flow fitted, alone": lambda s: s["nll_planar"],
}
KEPT = "kept (chosen on other draws)"  # the estimate the chapter's readings use
SENSITIVITY_COLUMNS = ("estimate of −ln p(x)", "approximation gap, flow minus diagonal", "estimator's share")


def estimator_share(flow: Run, diagonal: Run, noise: SeedNoise, estimate: str = KEPT) -> dict[str, tuple[float, float]]:
    """The flow model's gain in ``-ln p(x)`` over the diagonal model on the analysed images (paired, with the seed
    spread of a gain in ``-ln p(x)``), by the amortised posterior's estimate (``shown``: the paper's estimator) and
    by ``estimate`` (one of ``ESTIMATES``; ``tighter``), and by how much ``shown`` overstates the gain (``made``: the
    diagonal model's amortised estimate minus its tighter one, less the flow model's; ``u`` as for a change of a
    gap, ``gap_change``); each ``(value, u)``.  Every estimate uses the same proposals for both models."""
    f, d = _scores(flow), _scores(diagonal)
    tighter = ESTIMATES[estimate]
    spread = noise.gain["nll"]
    made = (d["nll_amortised"] - tighter(d)) - (f["nll_amortised"] - tighter(f))
    return {
        "shown": _with_spread(mean_se(f["nll_amortised"] - d["nll_amortised"]), spread),
        "tighter": _with_spread(mean_se(tighter(f) - tighter(d)), spread),
        "made": _with_spread(mean_se(made), noise.gain["kl"]),
    }


def scored_at_table_draws(analysis: Run, results_dir: Any = None) -> torch.Tensor | None:
    """The MNIST chapter's own per-image ``-ln p(x)`` of the analysed model on the analysed images (the amortised
    posterior's estimate with the run's ``eval_samples`` draws, Table 2's estimator), if the analysed model is the
    scored run itself (its parameters stored with it); None where it is a retraining (``nf.experiments.trained``):
    those scores then belong to another model."""
    from nf.runs.cache import lookup

    run = lookup("mnist", analysis.config["run"], results_dir)
    if run is None or not (run.path / "parameters.pt").exists():
        return None
    return run.load_tensors("scores.pt")["nll"][: analysis.config["images"]].double()


def share_at_table_draws(
    flow: Run, diagonal: Run, noise: SeedNoise, results_dir: Any = None
) -> dict[str, tuple[float, float]] | None:
    """As ``estimator_share`` with the amortised estimate at Table 2's number of draws (``scored_at_table_draws``):
    the flow's gain by it (``shown``) and how much it overstates the gain against the kept estimate (``made``),
    each ``(value, u)``; None unless both analysed models are scored runs."""
    f, d = scored_at_table_draws(flow, results_dir), scored_at_table_draws(diagonal, results_dir)
    if f is None or d is None:
        return None
    kept_f, kept_d = _scores(flow)["nll"], _scores(diagonal)["nll"]
    return {
        "shown": _with_spread(mean_se(f - d), noise.gain["nll"]),
        "made": _with_spread(mean_se((d - kept_d) - (f - kept_f)), noise.gain["kl"]),
    }


def estimator_note(entries: list[Entry], noise: SeedNoise, results_dir: Any = None) -> str:
    """For the scorecard: per recipe whose longest analysed planar flow and diagonal model are scored runs, the
    flow's gain over the diagonal model by Table 2's estimator on the analysed images, how much of it is the
    estimator's (``share_at_table_draws``), and the gain by the kept estimate beside half the paper's gain (the
    threshold of the rule for one model beating another), in a sentence; empty where no recipe has both."""
    parts = []
    for recipe, longest, flow, diagonal in _longest_pairs(entries):
        table = share_at_table_draws(flow, diagonal, noise, results_dir)
        if table:
            config, under = flow.config, recipe if recipe.startswith("our") else f"the {recipe}"
            kept = estimator_share(flow, diagonal, noise, KEPT)["tighter"]
            paper = TABLE2_NEG_LOG_LIKELIHOOD[paper_key(*longest)] - TABLE2_NEG_LOG_LIKELIHOOD[paper_key(*DIAGONAL)]
            parts.append(
                f"with {under}, {model_label(longest)} gains {_signed(table['shown'])} nats over the diagonal model "
                f"by Table 2's estimator ({config['run']['eval_samples']} draws, on the first {config['images']:,} "
                f"test images only), of which {_signed(table['made'])} is the estimator's "
                f"({_called_share(table['made'])}); by the kept estimate the gain is {_signed(kept)} nats, against "
                f"{GAIN_FRACTION * paper:+.1f}, half the paper's {paper:+.1f}"
            )
    return f"Measured there: {'; '.join(parts)}." if parts else ""


def estimator_reading(entries: list[Entry], noise: SeedNoise, results_dir: Any = None) -> str:
    """Per recipe and analysed flow model, ``estimator_share`` with the kept estimate, in words, and the same at
    Table 2's number of draws where both models are scored runs (``share_at_table_draws``)."""
    text = []
    for recipe, found in _by_recipe(entries).items():
        diagonal = found.get(DIAGONAL)
        if diagonal is None:
            continue
        parts, unmeasured = [], []
        draws = diagonal.config["run"]["eval_samples"]  # Table 2's draws, the same for every model of a recipe
        for model in (m for m in found if m != DIAGONAL):
            share = estimator_share(found[model], diagonal, noise)
            (shown, u_shown), (tighter, u_tighter), made = share["shown"], share["tighter"], share["made"]
            table = share_at_table_draws(found[model], diagonal, noise, results_dir)
            parts.append(
                f"{model_label(model)} minus the diagonal model: {shown:+.2f} ± {u_shown:.2f} nats by the "
                f"amortised estimate, {tighter:+.2f} ± {u_tighter:.2f} by the kept estimate, so the "
                f"amortised estimate overstates the flow's gain by {made[0]:+.2f} ± {made[1]:.2f} nats "
                f"({_called_share(made)})"
                + (
                    f"; with {draws} draws, as in Table 2 (the MNIST chapter's own scores of these two models), "
                    f"{_signed(table['shown'])} nats, overstated by {_signed(table['made'])} "
                    f"({_called_share(table['made'])})"
                    if table
                    else ""
                )
            )
            if table is None:
                unmeasured.append(model_label(model))
        if parts:
            text.append(
                f"**{recipe.capitalize()}**, "
                + "; ".join(parts)
                + "."
                + (
                    f" With {draws} draws, as in Table 2, not measured for {', '.join(unmeasured)}: the analysed "
                    "models are retrainings of the scored runs."
                    if unmeasured
                    else ""
                )
            )
    return "\n\n".join(text) or "No recipe has both a diagonal and a flow model analysed yet."


def _with_spread(value: tuple[float, float], spread: float) -> tuple[float, float]:
    return value[0], math.hypot(value[1], spread)


def _called_share(d: tuple[float, float]) -> str:
    if abs(d[0]) <= SIGNIFICANT * d[1]:
        return "not decidedly"
    return "decidedly" if d[0] > 0 else "decidedly negative: it understates the gain"


def estimate_sensitivity(entries: list[Entry], noise: SeedNoise) -> list[dict[str, str]]:
    """Per recipe, at the longest analysed planar flow against the diagonal model: the change of the approximation
    gap and the estimator's share (``estimator_share``) with each of ``ESTIMATES`` in place of the kept
    ``-ln p(x)``: a reading that moves between the rows depends on the choice of estimate; the lowest of the three on
    the same draws shows how far keeping lucky estimates would have moved it."""
    rows = []
    for recipe, longest, flow, diagonal in _longest_pairs(entries):
        f, d = _scores(flow), _scores(diagonal)
        chosen = {side: run.metrics["chosen_amortised"] for side, run in (("diagonal", diagonal), ("flow", flow))}
        for name, estimate in ESTIMATES.items():
            approximation = (f["local_bound"] - estimate(f)) - (d["local_bound"] - estimate(d))
            change = _with_spread(mean_se(approximation), noise.gain["kl"])
            made = estimator_share(flow, diagonal, noise, name)["made"]
            rows.append(
                {
                    "recipe": recipe,
                    "flow": model_label(longest),
                    SENSITIVITY_COLUMNS[0]: name,
                    SENSITIVITY_COLUMNS[1]: f"{change[0]:+.2f} ± {change[1]:.2f} ({_called(change)})",
                    SENSITIVITY_COLUMNS[2]: f"{made[0]:+.2f} ± {made[1]:.2f}",
                    "amortised proposal chosen (diagonal / flow)": (
                        f"{chosen['diagonal']:.0%} / {chosen['flow']:.0%}" if name == KEPT else "—"
                    ),
                }
            )
    return rows


def gaps_at_a_glance(
    entries: list[Entry], noise: SeedNoise, results_dir: Any = None, caveats: Caveats | None = None
) -> str:
    """The chapter in three short paragraphs: how many analyses are done, each analysed model's two gaps and what a
    planar flow fitted on a diagonal model's decoder recovers; which gap the flows close per recipe, with the
    convergence caveats (``convergence_caveats``) and a note on any model retrained outside the seed spread; how
    much the amortised estimate overstates the longest planar flow's gain, per recipe, with 5,000 draws and, where
    the analysed models are the scored runs, with Table 2's (``share_at_table_draws``) (Markdown)."""
    done = [(recipe, model, run) for recipe, model, run in entries if run is not None]
    if not done:
        return "No trained model has been analysed yet."
    parts = []
    for recipe, model, run in done:
        s = _scores(run)
        part = (
            f"{model_label(model)} ({recipe}): approximation gap {_pm(mean_se(s['approximation']))}, amortisation "
            f"gap {_pm(mean_se(s['amortisation']))} nats"
        )
        if model == DIAGONAL:  # the decoder's side is read on the diagonal models (the flows' are measured only)
            part += (
                f"; a planar flow fitted per image on its decoder recovers {_pm(_decoder_gain(s)[0])} nats of the "
                "approximation gap, "
                f"{decoder_call(run, _caveat_of(caveats, recipe, model))}"
            )
        parts.append(part)
    retrained = retrainings(entries, noise, results_dir)
    closes = [
        f"{recipe.capitalize()}: {sentence[0].lower()}{sentence[1:]}{_retrain_note(retrained, recipe)}"
        for recipe, found in _by_recipe(entries).items()
        if (sentence := which_gap_closes(found, noise, recipe, caveats))
    ]
    estimates = []
    for recipe, longest, flow, diagonal in _longest_pairs(entries):
        shares = {name: estimator_share(flow, diagonal, noise, name) for name in ESTIMATES}
        others = [s["made"][0] for s in shares.values()]
        share = shares[KEPT]
        draws = flow.config["nll_samples"]
        estimates.append(
            f"{recipe.capitalize()}: the amortised estimate of $-\\ln p(x)$ (the paper's estimator, here with "
            f"{draws:,} draws) puts {model_label(longest)} {share['shown'][0]:+.2f} ± {share['shown'][1]:.2f} "
            f"nats from the diagonal model on the first {flow.config['images']:,} test images, and overstates that "
            f"gain by {share['made'][0]:+.2f} ± "
            f"{share['made'][1]:.2f} against the gaps chapter's estimate (each image's proposal chosen on held-out "
            f"draws, from the same three proposals for both models; {min(others):+.2f} to {max(others):+.2f} by its "
            "other estimates)."
        )
        table = share_at_table_draws(flow, diagonal, noise, results_dir)
        if table:
            estimates[-1] += (
                f" With {flow.config['run']['eval_samples']} draws, as in Table 2 (the models' own "
                f"scores), the gain is {_signed(table['shown'])} and the overstatement {_signed(table['made'])}."
            )
    first = f"{len(done)} of {len(entries)} analyses done so far. " + ". ".join(p[0].upper() + p[1:] for p in parts)
    return "\n\n".join(text for text in (first + ".", " ".join(closes), " ".join(estimates)) if text)


def decoder_call(run: Run, caveat: Caveat | None = None) -> str:
    """The decoder's side (module docstring) decided for one analysis with a fitted planar posterior: whether the
    planar fit recovers decidedly less or more than ``HALF`` of the approximation gap, per image, and what that
    means; a call an unconverged bound (``caveat``) may have made is not established (rule 8)."""
    s = _scores(run)
    d, se = mean_se(s["local_bound"] - s["planar_bound"] - HALF * s["approximation"])
    if abs(d) <= SIGNIFICANT * se:
        return f"not established whether it recovers more or less than {HALF:.0%} of it"
    unconverged = (caveat or Caveat()).bounds
    blamed = PLANAR if d < 0 else LOCAL  # the bound whose excess alone could have made this call
    if blamed in unconverged:
        side = "less" if d < 0 else "more"
        return f"{side} than {HALF:.0%} of it as measured, not established: the {blamed} has not converged"
    if d < 0:
        return (
            f"less than {HALF:.0%} of it, decidedly: the decoder has made its posterior nearly as simple as the "
            "diagonal family"
        )
    return f"more than {HALF:.0%} of it, decidedly: the diagonal family, not the decoder, limits the bound"


def decoder_reading(entries: list[Entry], caveats: Caveats | None = None) -> str:
    """The decoder's side (module docstring) for each analysed diagonal model, with rule 8 for unconverged bounds
    (``caveats``); then, per recipe, what the same planar fit gains on each analysed flow model's decoder over ``F*``
    of that model's own family (measured; no rule)."""
    text = []
    for recipe, model, run in entries:
        if model != DIAGONAL or run is None:
            continue
        s = _scores(run)
        gain, gap = _decoder_gain(s)
        length = run.config["local_planar"]
        left = mean_se(s["planar_bound"] - s["nll"])
        caveat = _caveat_of(caveats, recipe, model)
        unconverged = (
            f" A longer fit still lowers that bound by {caveat.lowered_by(PLANAR):.2f} on the checked "
            "images (its fit has not converged), so the flow recovers more than this."
            if caveat is not None and PLANAR in caveat.bounds
            else ""
        )
        text.append(
            f"**{recipe.capitalize()}.** On the diagonal model's decoder a planar flow of {length} layers "
            f"fitted to each image lowers the bound by {_pm(gain)} nats, of an approximation gap of {_pm(gap)}: "
            f"{decoder_call(run, caveat)} "
            f"({run.metrics['planar_converged']:.0%} of the fits stopped by their rule). Its bound ends "
            f"{_pm(left)} nats above $-\\ln p(x)$.{unconverged}"
        )
    for recipe, found in _by_recipe(entries).items():
        flows = [(model, run) for model, run in found.items() if model != DIAGONAL]
        if not flows:
            continue
        parts = []
        for model, run in flows:
            gain, gap = _decoder_gain(_scores(run))
            caveat = _caveat_of(caveats, recipe, model)
            parts.append(
                f"{model_label(model)}: {_pm(gain)} of {_pm(gap)} "
                f"({run.metrics['planar_converged']:.0%} stopped by their rule"
                + (f"; {caveat.note()}" if caveat is not None else "")
                + ")"
            )
        text.append(
            f"**{recipe.capitalize()}, the flow models' decoders** (measured; no rule): how far the same planar "
            "fit's bound lies below the bound of the model's own family fitted to each image (nats; negative: "
            "above it), of the model's approximation gap: " + "; ".join(parts) + "."
        )
    return "\n\n".join(text) or "No model's decoder has been analysed yet."


def plot_gaps(entries: list[Entry], caveats: Caveats | None = None, ax: Any = None) -> Any:
    """One horizontal bar per analysed model and recipe: ``-ln p(x)``, then the approximation gap and the
    amortisation gap stacked on it (so the bar ends at the amortised bound ``F``), means over the images; a black
    tick at the bound of the planar flow fitted per image to the model's decoder; where ``F*`` has not converged
    (``caveats``), a white arrow from ``F*`` as far as the longest fit's check lowers it further (rule 8).
    ``ax``: a matplotlib axis, or None for a new figure; returns the axis."""
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    done = [(recipe, model, run) for recipe, model, run in entries if run is not None]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 * max(len(done), 2) + 1.2), layout="constrained")
    if not done:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no analysis yet", ha="center", va="center", transform=ax.transAxes)
        return ax
    nll = [run.metrics["nll"] for _, _, run in done]
    start = math.floor(min(nll)) - 1
    labels = [f"{model_label(model)} ({recipe})" for recipe, model, _ in done]
    y = list(range(len(done)))[::-1]
    approximation = [run.metrics["approximation_gap"] for _, _, run in done]
    amortisation = [run.metrics["amortisation_gap"] for _, _, run in done]
    ax.barh(y, [v - start for v in nll], left=start, color="0.8", label="−ln p(x)")
    ax.barh(y, approximation, left=nll, color="tab:blue", label="approximation gap")
    ax.barh(
        y,
        amortisation,
        left=[a + b for a, b in zip(nll, approximation)],
        color="tab:orange",
        label="amortisation gap",
    )
    ax.scatter(
        [run.metrics["planar_bound"] for _, _, run in done],
        y,
        marker="|",
        s=900,
        linewidths=2.5,
        color="black",
        zorder=3,
        label="planar flow fitted on the decoder",
    )
    outline = [patheffects.withStroke(linewidth=3.5, foreground="black")]
    arrow = {"arrowstyle": "-|>", "color": "white", "lw": 1.8, "mutation_scale": 14, "shrinkA": 0, "shrinkB": 0}
    moved = False
    for row, (recipe, model, run) in zip(y, done):
        caveat = _caveat_of(caveats, recipe, model)
        if caveat is not None and LOCAL in caveat.bounds:
            local, moved = run.metrics["local_bound"], True
            ax.annotate(
                "",
                xy=(local - caveat.lowered_by(LOCAL), row),
                xytext=(local, row),
                arrowprops={**arrow, "path_effects": outline},
            )
    ax.set_yticks(y, labels)
    ax.set_xlim(left=start)
    ax.set_xlabel(f"nats, test images (axis from {start}; each bar ends at the amortised bound F(x))")
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda i: names[i] == "planar flow fitted on the decoder")  # the tick last
    handles, names = [handles[i] for i in order], [names[i] for i in order]
    if moved:  # a proxy at the legend's size: an arrow pointing left
        proxy = Line2D([], [], color="white", lw=1.8, marker="<", markersize=16, markevery=[0], path_effects=outline)
        handles.append(proxy)
        names.append("F*(x) after the longest fit (its check)")
    ax.figure.legend(handles, names, loc="outside lower center", ncol=3, markerscale=0.35)
    return ax
