"""A verdict on each of the paper's MNIST claims, from the cached runs, by the rules of ``nf.report.verdicts``.

Every number is judged with its uncertainty ``u = sqrt(se^2 + s^2 / n)``
(``nf.report.verdicts``).  The spread ``s`` over training seeds is measured
(``seed_noise``) on the report ladder's models trained with several seeds:
``s`` of a model's number is the largest standard deviation over seeds of any
such model's; ``s`` of a paired difference the largest over any two such
models trained with the same seeds, but never less than ``sqrt(2)`` times the
spread of a model's number: two models that share only the number of their
seed vary independently, and a smaller spread of their difference measured on
seed-matched pairs rests on a correlation that another pair of models need not
have (first the measured spread alone was used; it came out at half the spread
of one model's number, and the floor was added before the verdicts were
shown).  The largest, so that the one spread transferred to every model
trained with one seed is the least flattering one measured.  A model trained
with several seeds is judged on its mean over them, ``n`` its number of
seeds; the others on seed 0, ``n = 1``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Any

from nf.experiments.comparisons import metric, paired_difference, seed_mean, seed_mean_difference, seed_spread
from nf.experiments.mnist_study import paper_recipe
from nf.report.mnist import by_model, model_name, paper_key, table2_models
from nf.report.paper import TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.verdicts import (
    VERDICTS,
    Verdict,
    beats,
    falls_along,
    not_tested,
    table2_number,
    verdict_columns,
    with_paper_optimiser,
    with_uncertainty,
)
from nf.runs.cache import Run

LADDER = (0, 10, 20, 40, 80)
NOT_REPORTED = "not reported"  # the paper column of a claim the paper leaves open
NICE_MIXINGS = {"nice-perm": "NICE-perm", "nice-orth": "NICE-orth"}  # with and without the scaling layer at K=20
QUANTITIES = ("nll", "bound", "kl")
DIAGONAL = ("none", 0)

Model = tuple[str, int]
Groups = dict[Model, dict[int, Run]]


PAIR_CLAIM = "planar K=20 gives a lower −ln p(x) than the diagonal model (Table 2)"
LADDER_CLAIMS = {  # a claim that a quantity falls along the planar ladder, by quantity
    "nll": "longer planar flows give a lower −ln p(x) (Table 2)",
    "bound": "the bound F(x) falls with K (Fig. 4a)",
    "kl": "the KL to the true posterior falls with K (Fig. 4b)",
}


@dataclass(frozen=True)
class SeedNoise:
    """The spread over training seeds the rules use (module docstring): ``level[q]`` of one model's mean ``q``,
    ``gain[q]`` of a paired difference of ``q`` between two models (``q`` in ``QUANTITIES``); ``measured_on``: the
    models it was measured on, with their numbers of seeds (empty if none has two)."""

    level: dict[str, float]
    gain: dict[str, float]
    measured_on: str


def separately_trained(a: Run, b: Run, noise: SeedNoise) -> tuple[float, float]:
    """``b - a`` in ``-ln p(x)``, paired on the same images, with the uncertainty of a difference between two
    separately trained models (one seed each): ``u = sqrt(se^2 + s^2)``, ``s`` the spread over training seeds of a
    paired gain."""
    d, se = paired_difference(a, b)
    return d, with_uncertainty(se, noise.gain["nll"])


def seed_noise(configs: list[dict[str, Any]], runs: list[Run | None]) -> SeedNoise:
    """The spread over training seeds, measured on the models trained with at least two seeds (module docstring);
    zero where no model has two."""
    groups = by_model([run for run in runs if run is not None])
    seeded = {model: seeds for model, seeds in groups.items() if len(seeds) >= 2}
    level, gain = {}, {}
    for q in QUANTITIES:
        level[q] = max(
            (statistics.stdev(metric(r, q)[0] for r in seeds.values()) for seeds in seeded.values()), default=0.0
        )
        spreads = []
        for a, b in itertools.combinations(seeded, 2):
            common = sorted(set(seeded[a]) & set(seeded[b]))
            if len(common) >= 2:
                spreads.append(seed_spread([(seeded[a][s], seeded[b][s]) for s in common], q)[1])
        gain[q] = max([*spreads, math.sqrt(2) * level[q]])
    names = ", ".join(f"{model_name({'flow': f, 'length': k})} ({len(seeded[(f, k)])} seeds)" for f, k in seeded)
    return SeedNoise(level, gain, names)


def _groups(runs: list[Run | None]) -> Groups:
    return by_model([run for run in runs if run is not None])


def _seeds_shown(n: int) -> str:
    return f" (mean of {n} seeds)" if n > 1 else ""


def level(groups: Groups, model: Model, noise: SeedNoise, quantity: str = "nll") -> tuple[float, float, int]:
    """A model's ``quantity``, averaged over its seeds, with its uncertainty ``u`` and the number of seeds."""
    value, se, n = seed_mean(list(groups[model].values()), quantity)
    return value, with_uncertainty(se, noise.level[quantity], n), n


def gain(groups: Groups, a: Model, b: Model, noise: SeedNoise, quantity: str = "nll") -> tuple[float, float]:
    """``b - a``, paired on the same images and averaged over the seeds both models share, with its uncertainty."""
    common = sorted(set(groups[a]) & set(groups[b]))
    d, se, n = seed_mean_difference([(groups[a][s], groups[b][s]) for s in common], quantity)
    return d, with_uncertainty(se, noise.gain[quantity], n)


def _rungs(groups: Groups, flow: str) -> tuple[list[Model], list[str]]:
    """The diagonal model and ``flow`` at every length of ``LADDER`` that are trained, and the missing ones."""
    models = [DIAGONAL if k == 0 else (flow, k) for k in LADDER]
    missing = ["diagonal" if k == 0 else f"{flow} K={k}" for k, m in zip(LADDER, models) if m not in groups]
    return [m for m in models if m in groups], missing


def _fall(groups: Groups, rungs: list[Model], noise: SeedNoise, quantity: str, paper_fall: float | None) -> Verdict:
    steps = [gain(groups, a, b, noise, quantity) for a, b in zip(rungs, rungs[1:])]
    span = f"K={rungs[0][1]} to {rungs[-1][1]}"
    return falls_along(steps, gain(groups, rungs[0], rungs[-1], noise, quantity), paper_fall, span)


def _beats_so_far(groups: Groups, comparisons: list[tuple[str, Model, Model]], noise: SeedNoise, names: str) -> Verdict:
    """``beats`` over ``(label, claimed winner, other)``; while a model is missing, not tested, with the evidence of
    the comparisons already trained.  ``names``: what the differences are (other minus winner)."""
    trained = [(label, a, b) for label, a, b in comparisons if a in groups and b in groups]
    missing = [f"{m[0]} K={m[1]}" for _, *pair in comparisons for m in pair if m not in groups]
    if not trained:
        return not_tested(", ".join(dict.fromkeys(missing)))
    seeds = {label: len(set(groups[a]) & set(groups[b])) for label, a, b in trained}
    averaged = [f"{label}: mean of {n} seeds" for label, n in seeds.items() if n > 1]
    if averaged:
        names += f" ({'; '.join(averaged)})"
    verdict = beats([gain(groups, a, b, noise) for _, a, b in trained], [label for label, _, _ in trained], names)
    return verdict if not missing else not_tested(", ".join(dict.fromkeys(missing)), verdict.reason, verdict.ours)


def mnist_verdicts(
    study: dict[str, Any],
    study_runs: dict[str, list[Run | None]],
    configs: list[dict[str, Any]],
    runs: list[Run | None],
    noise: SeedNoise | None = None,
) -> list[dict[str, str]]:
    """The paper's MNIST claims with our evidence and a verdict by the rules of ``nf.report.verdicts``: per claim
    its ``verdict``, ``evidence``, the deciding number ``ours`` and the ``margin`` (in uncertainties, ``"—"`` where
    none decided).

    ``configs``/``runs``: the report ladder (test set); ``study_runs``: the study's runs by recipe (validation set),
    whose ``paper`` recipe tells whether a claim holds under the paper's optimiser; ``noise``: the spread over
    training seeds (default: ``seed_noise`` of the ladder).
    """
    noise = noise or seed_noise(configs, runs)
    groups = _groups(runs)
    rows = []

    def add(claim: str, paper: str, verdict: Verdict) -> None:
        rows.append({"claim": claim, "paper": paper, **verdict_columns(verdict)})

    for flow, k, name in table2_models():
        model = DIAGONAL if k == 0 else (flow, k)
        paper = TABLE2_NEG_LOG_LIKELIHOOD[paper_key(flow, k)]
        if model in groups:
            value, u, n = level(groups, model, noise)
            verdict = table2_number(value, paper, u)
            verdict = Verdict(
                verdict.verdict, verdict.reason + _seeds_shown(n), verdict.ours + _seeds_shown(n), verdict.margin
            )
        else:
            verdict = not_tested(name)
        add(f"Table 2: {name}, −ln p(x)", f"{paper:.1f}", verdict)
    diagonal, planar = study["models"].index(["none", 0]), study["models"].index(["planar", 20])
    slow = study_runs.get(paper_recipe(study), [None] * len(study["models"]))
    slow = [slow[diagonal], slow[planar]] if slow[diagonal] is not None and slow[planar] is not None else None
    paper_diagonal = TABLE2_NEG_LOG_LIKELIHOOD["DLGM diagonal covariance"]
    paper_fall = TABLE2_NEG_LOG_LIKELIHOOD["DLGM+NF (k = 80)"] - paper_diagonal
    paper_fall_20 = TABLE2_NEG_LOG_LIKELIHOOD["DLGM+NF (k = 20)"] - paper_diagonal
    pair = [DIAGONAL, ("planar", 20)]
    if all(m in groups for m in pair):
        verdict = _fall(groups, pair, noise, "nll", paper_fall_20)
        n = len(set(groups[pair[0]]) & set(groups[pair[1]]))
        verdict = verdict.explained(f"test set{_seeds_shown(n)}: {verdict.reason}")
    else:
        verdict = not_tested("diagonal or planar K=20")
    if slow is not None:  # the study's runs with the paper's optimiser: validation set, the study's budget, seed 0
        d, se = paired_difference(*slow)
        slow_verdict = falls_along([], (d, with_uncertainty(se, noise.gain["nll"])), paper_fall_20, "K=0 to 20")
        where = f"validation set, {slow[0].config['updates']:,} updates"
        verdict = with_paper_optimiser(verdict, slow_verdict.explained(f"{where}: {slow_verdict.reason}"))
    study_evidence = []
    for name in (r for r in study["recipes"] if r != paper_recipe(study)):
        recipe_runs = study_runs.get(name) or [None] * len(study["models"])
        a, b = recipe_runs[diagonal], recipe_runs[planar]
        if a is not None and b is not None:
            d, se = paired_difference(a, b)
            u = with_uncertainty(se, noise.gain["nll"])
            study_evidence.append(f"{name} {d:+.2f} ± {u:.2f} ({a.config['updates']:,} updates)")
    if study_evidence:
        verdict = verdict.explained(
            f"{verdict.reason}; other study recipes, validation set: {', '.join(study_evidence)}"
        )
    add(PAIR_CLAIM, f"{paper_fall_20:+.1f}", verdict)
    rungs, missing = _rungs(groups, "planar")
    claims = [
        (LADDER_CLAIMS["nll"], "nll", f"{paper_fall:+.1f} from K=0 to 80", paper_fall),
        (LADDER_CLAIMS["bound"], "bound", "falls (plot)", None),
        (LADDER_CLAIMS["kl"], "kl", "falls (plot)", None),
    ]
    for claim, quantity, paper, fall in claims:
        add(
            claim, paper, _fall(groups, rungs, noise, quantity, fall) if not missing else not_tested(", ".join(missing))
        )
    gaps = [
        TABLE2_NEG_LOG_LIKELIHOOD[f"DLGM+NICE (k = {k})"] - TABLE2_NEG_LOG_LIKELIHOOD[f"DLGM+NF (k = {k})"]
        for k in LADDER[1:]
    ]
    add(
        "planar flows beat NICE at equal K (Table 2)",
        f"planar ahead by {min(gaps):.1f} to {max(gaps):.1f} nats",
        _beats_so_far(
            groups,
            [(f"K={k}", ("planar", k), ("nice-perm", k)) for k in LADDER[1:]],
            noise,
            "−ln p(x), NICE-perm minus planar",
        ),
    )
    add(
        "NICE's diagonal scaling layer helps (an open question of earlier reproductions)",
        NOT_REPORTED,
        _beats_so_far(
            groups,
            [(f"{name} K=20", (f"{m}+scale", 20), (m, 20)) for m, name in NICE_MIXINGS.items()],
            noise,
            "−ln p(x), without minus with the scaling",
        ),
    )
    return rows


def verdict_sentence(row: dict[str, str]) -> str:
    """A verdict row with its budget (``nf.book.chapter_runs.mnist_verdict``) as a sentence for another chapter."""
    return (
        f'At {row["updates"]} updates (MNIST chapter, test set) the verdict on "{row["claim"]}" is '
        f"*{row['verdict']}*; {row['evidence']}."
    )


def table2_as_bounds(configs: list[dict[str, Any]], runs: list[Run | None], noise: SeedNoise | None = None) -> str:
    """What the Table 2 verdicts would be if the paper's numbers were bounds ``F(x)``: our bound against them, by
    the same rule and uncertainty."""
    noise = noise or seed_noise(configs, runs)
    groups = _groups(runs)
    verdicts = []
    for flow, k, _ in table2_models():
        model = DIAGONAL if k == 0 else (flow, k)
        if model in groups:
            value, u, _ = level(groups, model, noise, "bound")
            verdicts.append(table2_number(value, TABLE2_NEG_LOG_LIKELIHOOD[paper_key(flow, k)], u).verdict)
    if not verdicts:
        return "No Table 2 model is trained yet."
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts)
    return (
        f"**Read as bounds.** If the paper's Table 2 numbers were bounds $\\mathcal F(x)$, our bound would be the "
        f"number to compare; by the same rule our {len(verdicts)} trained Table 2 models would then give: {counts}."
    )


def seed_noise_note(noise: SeedNoise) -> str:
    """Where the spread over training seeds that every verdict's uncertainty includes was measured, and its size."""
    if not noise.measured_on:
        return (
            "**Training seeds.** No model is trained with several seeds yet: the uncertainties cover the test images "
            "only, and a verdict may not survive retraining."
        )
    return (
        f"**Training seeds.** Every verdict's uncertainty $u$ includes the spread over training seeds, measured on "
        f"the models trained with several seeds ({noise.measured_on}): a standard deviation of "
        f"{noise.level['nll']:.2f} nats for a model's $-\\ln p(x)$, the largest measured, and of "
        f"{noise.gain['nll']:.2f} nats for a difference of $-\\ln p(x)$ between two models "
        f"({noise.gain['bound']:.2f} for the bound, {noise.gain['kl']:.2f} for the KL): the larger of the spread "
        f"measured on pairs trained with the same seeds and $\\sqrt 2$ times a model's, since two models retrained "
        f"independently vary independently. Both are carried over to every model trained with one seed."
    )
