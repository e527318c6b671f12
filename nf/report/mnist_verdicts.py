"""A verdict on each of the paper's MNIST claims, from the cached runs, by the rules of ``nf.report.verdicts``."""

from __future__ import annotations

from typing import Any

from nf.experiments.comparisons import metric, paired_difference
from nf.experiments.mnist_study import paper_recipe
from nf.report.paper import TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.verdicts import Verdict, beats, falls_along, not_tested, table2_number, with_paper_optimiser
from nf.runs.cache import Run

LADDER = (0, 10, 20, 40, 80)


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


def _fall(rungs: list[Run], quantity: str, paper_fall: float | None) -> Verdict:
    steps = [paired_difference(a, b, quantity) for a, b in zip(rungs, rungs[1:])]
    span = f"K={rungs[0].config['length']} to {rungs[-1].config['length']}"
    return falls_along(steps, paired_difference(rungs[0], rungs[-1], quantity), paper_fall, span)


def _beats_so_far(comparisons: list[tuple[str, Run | None, Run | None]], missing: list[str]) -> Verdict:
    """``beats`` over ``(label, claimed winner, other)``; while runs are ``missing``, not tested, with the evidence
    of the comparisons already trained."""
    trained = [(label, a, b) for label, a, b in comparisons if a is not None and b is not None]
    verdict = beats([paired_difference(a, b) for _, a, b in trained], [label for label, _, _ in trained])
    return verdict if not missing else not_tested(", ".join(missing), verdict.reason)


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

    for k in LADDER:
        name, key = ("diagonal", "DLGM diagonal covariance") if k == 0 else (f"planar K={k}", f"DLGM+NF (k = {k})")
        run = _seed0(configs, runs, "planar", k)
        paper = TABLE2_NEG_LOG_LIKELIHOOD[key]
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
        (
            "longer planar flows give a lower −ln p(x) (Table 2)",
            "nll",
            f"{paper_fall:+.1f} from K=0 to 80",
            paper_fall,
            paper_fall_20,
        ),
        ("the bound F(x) falls with K (Fig. 4a)", "bound", "falls (plot)", None, None),
        ("the KL to the true posterior falls with K (Fig. 4b)", "kl", "falls (plot)", None, None),
    ]
    for name in study["recipes"]:
        pair = study_runs.get(name, [None] * len(study["models"]))
        a, b = pair[diagonal], pair[planar]
        settings = f"{name}, {a.config['updates']:,} updates, validation set" if a is not None else name
        add(
            f"planar K=20 gives a lower −ln p(x) than the diagonal model ({settings})",
            f"{paper_fall_20:+.1f}",
            _fall([a, b], "nll", paper_fall_20) if a is not None and b is not None else not_tested(f"the {name} runs"),
        )
    for claim, quantity, paper, fall, fall_20 in claims:
        verdict = _fall(rungs, quantity, fall) if not missing else not_tested(", ".join(missing))
        if slow is not None:  # weaker evidence: K=0 against 20 only, validation set, the study's budget
            slow_verdict = _fall(slow, quantity, fall_20)
            where = f"K=0 against 20 only, validation set, {slow[0].config['updates']:,} updates"
            verdict = with_paper_optimiser(verdict, Verdict(slow_verdict.verdict, f"{where}: {slow_verdict.reason}"))
        add(claim, paper, verdict)
    gaps = [
        TABLE2_NEG_LOG_LIKELIHOOD[f"DLGM+NICE (k = {k})"] - TABLE2_NEG_LOG_LIKELIHOOD[f"DLGM+NF (k = {k})"]
        for k in LADDER[1:]
    ]
    pairs = [(_seed0(configs, runs, "nice-perm", k), _seed0(configs, runs, "planar", k)) for k in LADDER[1:]]
    missing = [
        f"{f} K={k}"
        for k, pair in zip(LADDER[1:], pairs)
        for f, run in zip(("nice-perm", "planar"), pair)
        if run is None
    ]
    add(
        "planar flows beat NICE at equal K (Table 2)",
        f"planar ahead by {min(gaps):.1f} to {max(gaps):.1f} nats",
        _beats_so_far([(f"K={k}", planar, nice) for k, (nice, planar) in zip(LADDER[1:], pairs)], missing),
    )
    scaled = [
        (_seed0(configs, runs, f"{m}+scale", 20), _seed0(configs, runs, m, 20)) for m in ("nice-perm", "nice-orth")
    ]
    missing = [
        f"{m}{s} K=20"
        for m, pair in zip(("nice-perm", "nice-orth"), scaled)
        for s, run in zip(("+scale", ""), pair)
        if run is None
    ]
    add(
        "NICE's diagonal scaling layer helps (an open question of earlier reproductions)",
        "not reported",
        _beats_so_far([(m, a, b) for m, (a, b) in zip(("NICE-perm K=20", "NICE-orth K=20"), scaled)], missing),
    )
    return rows
