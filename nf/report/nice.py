"""The NICE chapter's reading of its runs: every number in its discussion, computed (nothing typed)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, paired_difference
from nf.models.dlgm import DLGM
from nf.report.mnist import NOT_TRAINED, ahead, by_model, paper_key, planned_models, signed
from nf.report.paper import PAPER_TRAINING, TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.style import family_colour, family_marker
from nf.report.toy import energy_label, parameter_count, share, value_range
from nf.runs.cache import Run

NICE = ("nice-perm", "nice-orth")
NICE_LADDER_FLOWS = ("planar", "nice-perm", "nice-perm+scale", "nice-orth", "nice-orth+scale")  # beside the diagonal
FLOW_NAMES = {
    "none": "diagonal",
    "planar": "planar",
    "radial": "radial",
    "nice-perm": "NICE-perm",
    "nice-perm+scale": "NICE-perm+scale",
    "nice-orth": "NICE-orth",
    "nice-orth+scale": "NICE-orth+scale",
    "conv": "convolutional",
}
Model = tuple[str, int]  # (flow, K); the diagonal model is ("none", 0)


def nice_toy_reading(rows: list[dict[str, Any]], runs: list[Run]) -> str:
    """NICE against planar on the toy densities, and what the scaling layer changes (summary ``rows``, and the
    individual ``runs`` for the seeds of the shortest NICE-perm flow on the first target)."""
    by = {(r["energy"], r["family"], r["length"]): r for r in rows}
    energies = list(dict.fromkeys(r["energy"] for r in rows))
    lengths = sorted({r["length"] for r in rows if r["family"] == "planar"})
    short, long = lengths[0], lengths[-1]
    variants = [f for f in (*NICE, *(f"{n}+scale" for n in NICE)) if (energies[0], f, long) in by]
    ratio = {e: min(by[(e, f, long)]["kl"] for f in variants) / by[(e, "planar", long)]["kl"] for e in energies}
    low, high = min(ratio, key=ratio.get), max(ratio, key=ratio.get)
    planar_long, nice_long = parameter_count("planar", long), parameter_count(variants[0], long)
    nice_short = parameter_count(variants[0], short)
    text = [
        f"At $K = {long}$ the best NICE variant's KL is {ratio[low]:.1f} times the planar flow's on "
        f"{energy_label(low)} and {ratio[high]:.1f} times on {energy_label(high)}"
        + (", larger on every target" if min(ratio.values()) > 1 else "")
        + f", although NICE has {nice_long / planar_long:,.0f} times more parameters ({nice_long:,} against "
        f"{planar_long:,}); the shortest NICE flow ($K = {short}$, {nice_short:,} parameters) already has "
        f"{nice_short / planar_long:,.0f} times more than the longest planar flow."
    ]
    scaled = [
        (by[(e, f"{n}+scale", k)], by[(e, n, k)])
        for e in energies
        for n in NICE
        for k in lengths
        if (e, f"{n}+scale", k) in by and (e, n, k) in by
    ]
    if scaled:
        ratios = [a["kl"] / b["kl"] for a, b in scaled]
        within = sum(abs(a["kl"] - b["kl"]) <= 2 * math.hypot(a["kl_sd"], b["kl_sd"]) for a, b in scaled)
        steady = share(within, len(scaled), "pairs")
        text.append(
            f"The final scaling layer multiplies the KL by {value_range(ratios)} across the {len(scaled)} (target, "
            f"mixing, $K$) pairs, {sum(r < 1 for r in ratios)} times downwards; in {steady} the change is within two "
            "standard deviations of the seeds' spread."
        )
    seeds = sorted(
        (r.config["family"], r.config["seed"], r.metrics["kl"])
        for r in runs
        if r.config["energy"] == energies[0] and r.config["length"] == short and r.config["family"].startswith("nice-")
    )
    if seeds:
        text.append(
            f"On {energy_label(energies[0])} with $K = {short}$ the KL of each NICE run is: "
            + "; ".join(f"{family} seed {seed}: {kl:.2f}" for family, seed, kl in seeds)
            + "."
        )
    return " ".join(text)


def smoke_note(runs: list[Run]) -> str:
    """One sentence on a chapter's smoke runs (the ``quick`` protocol): how many, their budget, and how many ended
    with a finite ``-ln p(x)`` on the test images they were scored on."""
    if not runs:
        return "No smoke runs."
    finite = sum(math.isfinite(r.metrics["test_nll"]) for r in runs)
    budgets = sorted({r.config["updates"] for r in runs})
    return (
        f"{len(runs)} smoke runs of {' or '.join(f'{u:,}' for u in budgets)} updates; "
        f"{share(finite, len(runs), 'runs')} end with a finite $-\\ln p(x)$ on the test images."
    )


def ladder_subset(
    configs: list[dict[str, Any]], runs: list[Run | None], flows: tuple[str, ...]
) -> tuple[list[dict[str, Any]], list[Run | None]]:
    """The MNIST report ladder's ``configs`` and their ``runs`` (None: not trained yet) restricted to the diagonal
    model and the flow families ``flows``, every seed, in the ladder's order."""
    keep = [i for i, c in enumerate(configs) if c["length"] == 0 or c["flow"] in flows]
    return [configs[i] for i in keep], [runs[i] for i in keep]


def nice_ladder(configs: list[dict[str, Any]], runs: list[Run | None]) -> tuple[list[dict[str, Any]], list[Run | None]]:
    """The models of the MNIST report ladder that the NICE chapter shows: the diagonal model, planar and every NICE
    variant at every length the ladder has (``ladder_subset`` with ``NICE_LADDER_FLOWS``)."""
    return ladder_subset(configs, runs, NICE_LADDER_FLOWS)


def seed0_models(configs: list[dict[str, Any]], runs: list[Run | None]) -> tuple[list[Model], dict[Model, Run]]:
    """The models ``(flow, K)`` the ladder ``configs`` plan (seed 0, in their order), and the trained seed-0 run of
    each, by model."""
    planned = planned_models([c for c in configs if c["seed"] == 0])
    seed0 = {m: seeds[0] for m, seeds in by_model([r for r in runs if r is not None]).items() if 0 in seeds}
    return planned, seed0


@dataclass(frozen=True)
class FamilyGains:
    """One flow family of the MNIST report ladder against the diagonal model (seed 0, test set): the ``planned``
    models and the trained seed-0 runs by model (``seed0``), the diagonal model's run, the family's planned
    ``lengths`` and ``trained`` ones, the paired ``gain`` (change in ``-ln p(x)`` from the diagonal model, with its
    standard error) by trained length, ``waiting`` (a sentence naming the ladder's models not trained yet, or "") and
    ``unavailable``: the sentence to show instead of a reading when the family has nothing to compare yet ("" when
    it has)."""

    planned: list[Model]
    seed0: dict[Model, Run]
    diagonal: Run | None
    lengths: list[int]
    trained: list[int]
    gain: dict[int, tuple[float, float]]
    waiting: str
    unavailable: str


def family_gains(configs: list[dict[str, Any]], runs: list[Run | None], flow: str) -> FamilyGains:
    """``flow``'s ``FamilyGains`` in the report ladder ``configs`` and their ``runs`` (None where not trained yet)."""
    planned, seed0 = seed0_models(configs, runs)
    diagonal = seed0.get(("none", 0))
    lengths = sorted(k for f, k in planned if f == flow)
    trained = [k for k in lengths if (flow, k) in seed0]
    missing = [model_label(m) for m in planned if m not in seed0]
    waiting = f" Not trained yet: {', '.join(missing)}." if missing else ""
    name = FLOW_NAMES.get(flow, flow)
    unavailable = ""
    if not lengths:
        unavailable = f"The MNIST report ladder of this profile has no {name} model."
    elif diagonal is None or not trained:
        unavailable = f"No {name} model of the MNIST report ladder is trained yet (with the diagonal model).{waiting}"
    gain = {k: paired_difference(diagonal, seed0[(flow, k)]) for k in trained} if not unavailable else {}
    return FamilyGains(planned, seed0, diagonal, lengths, trained, gain, waiting, unavailable)


def model_label(model: Model) -> str:
    """``("nice-perm", 20)`` -> ``"NICE-perm K=20"``; the diagonal model -> ``"diagonal"``."""
    flow, k = model
    return "diagonal" if k == 0 else f"{FLOW_NAMES.get(flow, flow)} K={k}"


def nice_comparisons(planned: list[Model]) -> list[tuple[Model, Model]]:
    """The pairs ``(first, second)`` the NICE chapter compares, among the ``planned`` models: planar against
    NICE-perm at each length both have; at each length with the scaled and orthogonal variants, each NICE mixing
    without and with the scaling layer, and NICE-perm against NICE-orth."""
    have = set(planned)
    lengths = sorted({k for f, k in planned if f == "nice-perm"})
    pairs = [(("planar", k), ("nice-perm", k)) for k in lengths if ("planar", k) in have]
    for k in lengths:
        pairs += [((n, k), (f"{n}+scale", k)) for n in NICE if (n, k) in have and (f"{n}+scale", k) in have]
        if ("nice-orth", k) in have:
            pairs.append((("nice-perm", k), ("nice-orth", k)))
    return pairs


def nice_pairs_table(configs: list[dict[str, Any]], runs: list[Run | None]) -> list[dict[str, str]]:
    """The NICE chapter's comparisons (``nice_comparisons``) in the MNIST report ladder, seed 0: the second model
    minus the first in ``-ln p(x)`` and in the bound ``F(x)``, paired on the same test images, ± the paired standard
    error (negative: the second model is better); ``NOT_TRAINED`` where a run is missing."""
    planned, seed0 = seed0_models(configs, runs)
    rows = []
    for first, second in nice_comparisons(planned):
        row = {"K": str(first[1]), "second minus first": f"{model_label(second)} − {model_label(first)}"}
        a, b = seed0.get(first), seed0.get(second)
        for quantity, column in (("nll", "−ln p(x)"), ("bound", "F(x)")):
            row[column] = signed(paired_difference(a, b, quantity)) if a and b else NOT_TRAINED
        rows.append(row)
    return rows


def plot_gain_versus_parameters(configs: list[dict[str, Any]], runs: list[Run | None], ax: Any = None) -> Any:
    """The equal-parameter comparison on the MNIST report ladder (seed 0): each flow's paired change in ``-ln p(x)``
    from the diagonal model on the same test images (± two paired standard errors) against the parameters it adds
    to the diagonal model, one line per flow family, each point of a family with several lengths labelled with its K
    (a family with one length is a lone marker, unlabelled).  ``ax``: a matplotlib axis, or
    None for a new figure; returns the axis (with nothing drawn if the diagonal model is not trained)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from nf.report.mnist import count_label

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    planned, seed0 = seed0_models(configs, runs)
    diagonal = seed0.get(("none", 0))
    if diagonal is None:
        return ax
    base = diagonal.metrics["parameters"]
    for flow in dict.fromkeys(f for f, k in planned if k > 0):
        line = sorted((m for m in seed0 if m[0] == flow and m[1] > 0), key=lambda m: m[1])
        if not line:
            continue
        added = [seed0[m].metrics["parameters"] - base for m in line]
        gains = [paired_difference(diagonal, seed0[m]) for m in line]
        ax.errorbar(
            added,
            [d for d, _ in gains],
            yerr=[2 * se for _, se in gains],
            marker=family_marker(flow),
            capsize=3,
            color=family_colour(flow),
            label=FLOW_NAMES.get(flow, flow),
        )
        below = flow.startswith("nice")  # NICE's labels under its line, the others' above: no two overprint
        for (_, k), x, (d, _) in zip(line, added, gains if len(line) > 1 else []):  # a lone point: K in the caption
            ax.annotate(
                f"K={k}",
                (x, d),
                fontsize=9,
                color=family_colour(flow),
                textcoords="offset points",
                xytext=(5, -6) if below else (5, 5),
                va="top" if below else "bottom",
            )
    ax.axhline(0.0, color="gray", linestyle="--", linewidth=1, label="diagonal")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(count_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.12, y=0.1)
    ax.set_xlabel("parameters added to the diagonal DLGM")
    ax.set_ylabel("−ln p(x) minus the diagonal\nmodel's (paired, nats)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def _steps(seed0: dict[Model, Run], flow: str, lengths: list[int]) -> list[tuple[int, int, float, float]]:
    """``(K, next K, d, se)``: the paired change in ``-ln p(x)`` of ``flow`` from each trained length to the next."""
    trained = [k for k in lengths if (flow, k) in seed0]
    return [(a, b, *paired_difference(seed0[(flow, a)], seed0[(flow, b)])) for a, b in zip(trained, trained[1:])]


def nice_mnist_reading(configs: list[dict[str, Any]], runs: list[Run | None]) -> str:
    """NICE against the diagonal model and planar flows on MNIST, and what the scaling layer and the orthogonal
    mixing change, in the MNIST report ladder (``configs`` and their ``runs``, None where not trained yet; seed 0,
    test set): paired differences on the same images; ``SIGNIFICANT`` paired standard errors call a difference."""
    family = family_gains(configs, runs, "nice-perm")
    if family.unavailable:
        return family.unavailable
    planned, seed0, diagonal, trained, gain = family.planned, family.seed0, family.diagonal, family.trained, family.gain
    lengths, waiting = family.lengths, family.waiting
    updates = diagonal.config["updates"]
    below = [k for k in trained if gain[k][0] < -SIGNIFICANT * gain[k][1]]
    steps = _steps(seed0, "nice-perm", lengths)
    falls = steps and all(d < -SIGNIFICANT * se for _, _, d, se in steps)
    gaps = [
        seed0[("nice-perm", k)].metrics["test_nll"] - TABLE2_NEG_LOG_LIKELIHOOD[paper_key("nice-perm", k)]
        for k in trained
        if paper_key("nice-perm", k) in TABLE2_NEG_LOG_LIKELIHOOD
    ]
    text = [
        f"With {updates:,} updates ({updates / PAPER_TRAINING['updates']:.0%} of the paper's; test set, seed 0, "
        f"paired on the same images) NICE-perm's $-\\ln p(x)$ is significantly below the diagonal model's at "
        f"{share(len(below), len(trained), 'lengths')} ("
        + "; ".join(f"$K = {k}$: {signed(gain[k])}" for k in trained)
        + " nats)"
        + (", falling significantly at every doubling of $K$" if falls else "")
        + (f"; ours minus the paper's NICE rows: {value_range(gaps, '+.2f')} nats" if gaps else "")
        + "."
    ]
    both = [k for k in trained if ("planar", k) in seed0]
    if both:
        versus = {k: paired_difference(seed0[("planar", k)], seed0[("nice-perm", k)]) for k in both}
        better = [k for k in both if versus[k][0] < -SIGNIFICANT * versus[k][1]]
        text.append(
            "At equal $K$ NICE-perm is significantly ahead of the planar flow at "
            f"{share(len(better), len(both), 'lengths')}: "
            + "; ".join(f"at $K = {k}$ it is {ahead(versus[k])} planar" for k in both)
            + "."
        )
    extra = {m: r.metrics["parameters"] - diagonal.metrics["parameters"] for m, r in seed0.items()}
    cheaper = []  # for each planar length, the longest NICE-perm flow that adds fewer parameters
    for kp in sorted(k for f, k in seed0 if f == "planar"):
        fewer = [kn for kn in trained if extra[("nice-perm", kn)] < extra[("planar", kp)]]
        if fewer and max(fewer) != kp:  # at equal K the comparison is above
            kn = max(fewer)
            d = paired_difference(seed0[("planar", kp)], seed0[("nice-perm", kn)])
            cheaper.append(
                f"NICE-perm $K = {kn}$ ({extra[('nice-perm', kn)]:,} added parameters) is {ahead(d)} planar "
                f"$K = {kp}$ ({extra[('planar', kp)]:,})"
            )
    if cheaper:
        text.append("At fewer parameters: " + "; ".join(cheaper) + ".")
    model = DLGM("planar", 1)
    per_layer = model.flow.n_params
    text.append(
        f"A planar layer needs {per_layer} numbers per image, all from the inference network's head: "
        f"{per_layer * (model.flow_head.in_features + 1):,} head parameters per layer."
    )
    for first, second in nice_comparisons(planned):
        if first[0] == "planar" or first not in seed0 or second not in seed0:
            continue
        text.append(
            f"At $K = {first[1]}$ {model_label(second).rsplit(' ', 1)[0]} is "
            f"{ahead(paired_difference(seed0[first], seed0[second]))} {model_label(first).rsplit(' ', 1)[0]}."
        )
    return " ".join(text) + waiting
