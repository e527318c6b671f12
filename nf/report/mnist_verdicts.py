"""A verdict on each of the paper's MNIST claims, from the cached runs, by the rules of ``nf.report.verdicts``."""

from __future__ import annotations

from typing import Any

from nf.experiments.comparisons import metric, paired_difference, seed_spread
from nf.experiments.mnist_study import paper_recipe
from nf.report.mnist import by_model, paper_key, table2_models
from nf.report.paper import TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.verdicts import Verdict, beats, falls_along, not_tested, table2_number, with_paper_optimiser
from nf.runs.cache import Run

LADDER = (0, 10, 20, 40, 80)
NOT_REPORTED = "not reported"  # the paper column of a claim the paper leaves open
NICE_MIXINGS = {"nice-perm": "NICE-perm", "nice-orth": "NICE-orth"}  # with and without the scaling layer at K=20


def _seed0(configs: list[dict[str, Any]], runs: list[Run | None], flow: str, length: int) -> Run | None:
    """The seed-0 run of ``flow`` at ``length`` (the diagonal model at length 0), or None."""
    return next(
        (
            r
            for c, r in zip(configs, runs)
            if c["seed"] == 0 and c["length"] == length and (length == 0 or c["flow"] == flow)
        ),
        None,
    )


def _rungs(configs: list[dict[str, Any]], runs: list[Run | None], flow: str) -> tuple[list[Run], list[str]]:
    """Seed-0 runs of the diagonal model and ``flow`` at every length of ``LADDER``, and the missing ones."""
    found = [_seed0(configs, runs, flow, k) for k in LADDER]
    missing = ["diagonal" if k == 0 else f"{flow} K={k}" for k, run in zip(LADDER, found) if run is None]
    return [run for run in found if run is not None], missing


def _planar_nice_pairs(
    configs: list[dict[str, Any]], runs: list[Run | None]
) -> list[tuple[int, Run | None, Run | None]]:
    """Per flow length of ``LADDER`` (K > 0): ``(K, planar run, NICE-perm run)``, seed 0, None where missing."""
    return [(k, _seed0(configs, runs, "planar", k), _seed0(configs, runs, "nice-perm", k)) for k in LADDER[1:]]


def _scaling_pairs(configs: list[dict[str, Any]], runs: list[Run | None]) -> list[tuple[str, Run | None, Run | None]]:
    """Per NICE mixing at K=20: ``(flow, run with the scaling layer, run without)``, seed 0, None where missing."""
    return [(m, _seed0(configs, runs, f"{m}+scale", 20), _seed0(configs, runs, m, 20)) for m in NICE_MIXINGS]


def _fall(rungs: list[Run], quantity: str, paper_fall: float | None) -> Verdict:
    steps = [paired_difference(a, b, quantity) for a, b in zip(rungs, rungs[1:])]
    span = f"K={rungs[0].config['length']} to {rungs[-1].config['length']}"
    return falls_along(steps, paired_difference(rungs[0], rungs[-1], quantity), paper_fall, span)


def _beats_so_far(comparisons: list[tuple[str, Run | None, Run | None]], missing: list[str], names: str) -> Verdict:
    """``beats`` over ``(label, claimed winner, other)``; while runs are ``missing``, not tested, with the evidence
    of the comparisons already trained.  ``names``: what the differences are (other minus winner)."""
    trained = [(label, a, b) for label, a, b in comparisons if a is not None and b is not None]
    verdict = beats([paired_difference(a, b) for _, a, b in trained], [label for label, _, _ in trained], names)
    return verdict if not missing else not_tested(", ".join(missing), verdict.reason if trained else "")


def mnist_verdicts(
    study: dict[str, Any],
    study_runs: dict[str, list[Run | None]],
    configs: list[dict[str, Any]],
    runs: list[Run | None],
) -> list[dict[str, str]]:
    """The paper's MNIST claims with our evidence and a verdict by the rules of ``nf.report.verdicts``.

    ``configs``/``runs``: the report ladder (test set); ``study_runs``: the study's runs by recipe (validation set),
    whose ``paper`` recipe tells whether a claim holds under the paper's optimiser.
    """
    rows = []

    def add(claim: str, paper: str, verdict: Verdict) -> None:
        rows.append({"claim": claim, "paper": paper, "verdict": verdict.verdict, "evidence": verdict.reason})

    for flow, k, name in table2_models():
        run = _seed0(configs, runs, flow, k)
        paper = TABLE2_NEG_LOG_LIKELIHOOD[paper_key(flow, k)]
        add(
            f"Table 2: {name}, −ln p(x)",
            f"{paper:.1f}",
            table2_number(metric(run, "nll")[0], paper) if run is not None else not_tested(name),
        )
    rungs, missing = _rungs(configs, runs, "planar")
    diagonal, planar = study["models"].index(["none", 0]), study["models"].index(["planar", 20])
    slow = study_runs.get(paper_recipe(study), [None] * len(study["models"]))
    slow = [slow[diagonal], slow[planar]] if slow[diagonal] is not None and slow[planar] is not None else None
    paper_fall = TABLE2_NEG_LOG_LIKELIHOOD["DLGM+NF (k = 80)"] - TABLE2_NEG_LOG_LIKELIHOOD["DLGM diagonal covariance"]
    paper_fall_20 = (
        TABLE2_NEG_LOG_LIKELIHOOD["DLGM+NF (k = 20)"] - TABLE2_NEG_LOG_LIKELIHOOD["DLGM diagonal covariance"]
    )
    claims = [
        ("longer planar flows give a lower −ln p(x) (Table 2)", "nll", f"{paper_fall:+.1f} from K=0 to 80", paper_fall),
        ("the bound F(x) falls with K (Fig. 4a)", "bound", "falls (plot)", None),
        ("the KL to the true posterior falls with K (Fig. 4b)", "kl", "falls (plot)", None),
    ]
    pair = [_seed0(configs, runs, "planar", 0), _seed0(configs, runs, "planar", 20)]
    verdict = _fall(pair, "nll", paper_fall_20) if None not in pair else not_tested("diagonal or planar K=20")
    verdict = Verdict(verdict.verdict, f"test set: {verdict.reason}")
    if slow is not None:  # the study's runs with the paper's optimiser: validation set, the study's budget
        slow_verdict = _fall(slow, "nll", paper_fall_20)
        where = f"validation set, {slow[0].config['updates']:,} updates"
        verdict = with_paper_optimiser(verdict, Verdict(slow_verdict.verdict, f"{where}: {slow_verdict.reason}"))
    study_evidence = []
    for name in (r for r in study["recipes"] if r != paper_recipe(study)):
        recipe_runs = study_runs.get(name) or [None] * len(study["models"])
        a, b = recipe_runs[diagonal], recipe_runs[planar]
        if a is not None and b is not None:
            d, se = paired_difference(a, b)
            study_evidence.append(f"{name} {d:+.2f} ± {se:.2f} ({a.config['updates']:,} updates)")
    if study_evidence:
        verdict = Verdict(
            verdict.verdict, f"{verdict.reason}; other study recipes, validation set: {', '.join(study_evidence)}"
        )
    add("planar K=20 gives a lower −ln p(x) than the diagonal model (Table 2)", f"{paper_fall_20:+.1f}", verdict)
    for claim, quantity, paper, fall in claims:
        add(claim, paper, _fall(rungs, quantity, fall) if not missing else not_tested(", ".join(missing)))
    gaps = [
        TABLE2_NEG_LOG_LIKELIHOOD[f"DLGM+NICE (k = {k})"] - TABLE2_NEG_LOG_LIKELIHOOD[f"DLGM+NF (k = {k})"]
        for k in LADDER[1:]
    ]
    pairs = _planar_nice_pairs(configs, runs)
    missing = [f"{f} K={k}" for k, *pair in pairs for f, run in zip(("planar", "nice-perm"), pair) if run is None]
    add(
        "planar flows beat NICE at equal K (Table 2)",
        f"planar ahead by {min(gaps):.1f} to {max(gaps):.1f} nats",
        _beats_so_far(
            [(f"K={k}", planar, nice) for k, planar, nice in pairs], missing, "−ln p(x), NICE-perm minus planar"
        ),
    )
    scaled = _scaling_pairs(configs, runs)
    missing = [f"{m}{s} K=20" for m, *pair in scaled for s, run in zip(("+scale", ""), pair) if run is None]
    add(
        "NICE's diagonal scaling layer helps (an open question of earlier reproductions)",
        NOT_REPORTED,
        _beats_so_far(
            [(f"{NICE_MIXINGS[m]} K=20", a, b) for m, a, b in scaled],
            missing,
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


def table2_as_bounds(configs: list[dict[str, Any]], runs: list[Run | None]) -> str:
    """What the Table 2 verdicts would be if the paper's numbers were bounds ``F(x)``: our bound against them."""
    verdicts = []
    for config, run in zip(configs, runs):
        key = paper_key(config["flow"], config["length"])
        if run is not None and key is not None and config["seed"] == 0:
            verdicts.append(table2_number(metric(run, "bound")[0], TABLE2_NEG_LOG_LIKELIHOOD[key]).verdict)
    if not verdicts:
        return "No Table 2 model is trained yet."
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("reproduced", "partly", "not reproduced") if v in verdicts)
    return (
        f"**Read as bounds.** If the paper's Table 2 numbers were bounds $\\mathcal F(x)$, our bound would be the "
        f"number to compare; by the same rule our {len(verdicts)} trained Table 2 models would then give: {counts}."
    )


def seed_check(configs: list[dict[str, Any]], runs: list[Run | None]) -> str:
    """How the smallest difference a "beats" verdict rests on (one training seed) compares with the spread over
    training seeds of a paired gain, measured where there are several seeds (planar K=20 against the diagonal
    model)."""
    by_seed = by_model([run for run in runs if run is not None])
    diagonal, planar = by_seed.get(("none", 0), {}), by_seed.get(("planar", 20), {})
    pairs = [(diagonal[s], planar[s]) for s in sorted(planar) if s in diagonal]
    if len(pairs) < 2:
        return "**Training seeds.** No pair of models is trained with several seeds yet."
    _, spread, n_seeds = seed_spread(pairs)
    se = paired_difference(*pairs[0])[1]
    compared = [
        (f"NICE-perm minus planar at K={k}", planar, nice) for k, planar, nice in _planar_nice_pairs(configs, runs)
    ]
    compared += [
        (f"{NICE_MIXINGS[m]} K=20 without minus with the scaling", scaled, plain)
        for m, scaled, plain in _scaling_pairs(configs, runs)
    ]
    sizes = [(abs(paired_difference(a, b)[0]), label) for label, a, b in compared if a is not None and b is not None]
    text = (
        f"**Training seeds.** The verdicts compare seed-0 runs, and a paired standard error covers the test images, "
        f"not the training seed. Where a pair of models was trained with {n_seeds} seeds (planar K=20 and the "
        f"diagonal model), the paired gain varies over seeds with a standard deviation of {spread:.2f} nats, "
        f"about its paired standard error ({se:.2f})."
    )
    if sizes and spread > 0:
        smallest, label = min(sizes)
        text += (
            f" The smallest difference a comparison verdict rests on ({label}: {smallest:.2f} nats) is "
            f"{smallest / spread:.0f} times that spread, if other pairs of models vary with the seed as much."
        )
    return text
