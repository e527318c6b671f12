"""The convolutional-flow chapter's reading of its runs: the numbers of its discussion, computed."""

from __future__ import annotations

from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, paired_difference
from nf.report.mnist import NOT_TRAINED, ahead, by_model, model_name, planned_models, signed
from nf.report.nice import family_gains, ladder_subset
from nf.report.style import family_colour, length_alpha, length_linestyle
from nf.report.toy import energy_label, parameter_count
from nf.runs.cache import Run

COMPARED = {"conv": "convolutional", "planar": "planar", "nice-perm": "NICE-perm", "nice-perm+scale": "NICE-perm+scale"}
CONV_LADDER_FLOWS = tuple(COMPARED)  # the families the chapter shows beside the diagonal model


def _targets(energies: list[str]) -> str:
    return ", ".join(map(energy_label, energies)) if energies else "no target"


def conv_toy_reading(rows: list[dict[str, Any]]) -> str:
    """Convolutional flows against planar flows on the toy densities (summary ``rows``, mean over seeds)."""
    kl = {(r["energy"], r["family"], r["length"]): r["kl"] for r in rows}
    seeds = {r["seeds"] for r in rows}
    energies = list(dict.fromkeys(r["energy"] for r in rows))
    lengths = sorted({k for _, f, k in kl if f == "conv"})
    short, middle, long = lengths[0], lengths[len(lengths) // 2], lengths[-1]
    below_short = [e for e in energies if kl[(e, "conv", short)] < kl[(e, "planar", short)]]
    below_long = [e for e in energies if kl[(e, "conv", middle)] < kl[(e, "planar", long)]]
    longer_worse = [e for e in energies if kl[(e, "conv", long)] >= kl[(e, "conv", middle)]]
    per_step = (
        parameter_count("conv", 2) - parameter_count("conv", 1),
        parameter_count("planar", 2) - parameter_count("planar", 1),
    )
    return (
        f"With $K = {short}$ the convolutional flow's KL is below the planar flow's of the same length on "
        f"{_targets(below_short)} (of {len(energies)} targets); with $K = {middle}$ it is below the planar flow "
        f"of length {long} on {_targets(below_long)}. From $K = {middle}$ to $K = {long}$ its KL does not fall on "
        f"{_targets(longer_worse)}. A convolutional step has {per_step[0]:,} parameters, a planar layer "
        f"{per_step[1]}. Means over {', '.join(map(str, sorted(seeds)))} seeds per flow in this chapter, so the "
        "planar and NICE numbers differ slightly from the toy chapter's."
    )


def conv_ladder(configs: list[dict[str, Any]], runs: list[Run | None]) -> tuple[list[dict[str, Any]], list[Run | None]]:
    """The models of the MNIST report ladder that the convolutional-flow chapter shows: the diagonal model and the
    convolutional, planar and NICE-perm flows (with the scaling layer where the ladder has it) at every length the
    ladder has (``ladder_subset`` with ``CONV_LADDER_FLOWS``)."""
    return ladder_subset(configs, runs, CONV_LADDER_FLOWS)


def _training_bound(run: Run, update: int) -> float:
    """The training bound (mean over the logging interval) a run logged first at or after ``update``, else its last."""
    history = run.metrics["history"]
    return next((h[2] for h in history if h[0] >= update), history[-1][2])


def conv_mnist_reading(configs: list[dict[str, Any]], runs: list[Run | None]) -> str:
    """Convolutional posteriors against the diagonal model in the MNIST report ladder (``configs`` and their ``runs``,
    None where not trained yet; seed 0, test set): the paired change in ``-ln p(x)`` at each length, and how the
    training bound's gap to the diagonal model's moves from twice the annealing length to the end of training."""
    family = family_gains(configs, runs, "conv")
    missing = [f"K={k}" for k in family.lengths if k not in family.trained]
    waiting = f" Not trained yet: the convolutional flow at {', '.join(missing)}." if missing else ""
    if not family.lengths:
        return "The MNIST report ladder of this profile has no convolutional flow."
    if family.unavailable:
        return "No convolutional flow of the MNIST report ladder is trained yet (with the diagonal model)." + waiting
    seed0, diagonal, trained, gain = family.seed0, family.diagonal, family.trained, family.gain
    updates = diagonal.config["updates"]

    def verdict(d: tuple[float, float]) -> str:
        if abs(d[0]) <= SIGNIFICANT * d[1]:
            return "level with it"
        return "ahead of it" if d[0] < 0 else "behind it"

    text = (
        f"With {updates:,} updates (test set, seed 0, paired on the same images), $-\\ln p(x)$ of the convolutional "
        "posteriors minus the diagonal model's: "
        + "; ".join(f"$K = {k}$: {signed(gain[k])} nats ({verdict(gain[k])})" for k in trained)
        + "."
    )
    start = 2 * diagonal.config["anneal_updates"]
    if start < updates:
        gaps = [
            f"$K = {k}$ from {_training_bound(seed0[('conv', k)], start) - _training_bound(diagonal, start):+.2f} to "
            f"{_training_bound(seed0[('conv', k)], updates) - _training_bound(diagonal, updates):+.2f}"
            for k in trained
        ]
        text += (
            f" The training bound (mean over the last {diagonal.config['eval_every']:,} updates, on training batches, "
            f"unpaired) minus the diagonal model's goes from update {start:,} to the end: " + "; ".join(gaps) + " nats."
        )
    return text + _bound_split(diagonal, {k: seed0[("conv", k)] for k in trained}) + waiting


def _lengths(ks: list[int]) -> str:
    return "$K = " + ", ".join(map(str, ks)) + "$"


def _bound_split(diagonal: Run, runs: dict[int, Run]) -> str:
    """The test bound's paired change from the diagonal model split into its two parts, ``-ln p(x)`` (the
    generative model a run trained) and the KL to the posterior (the fit of its posterior), per length; which part
    is the larger; and the lengths whose ``-ln p(x)`` is decidedly worse while their KL is decidedly smaller (beyond
    ``SIGNIFICANT`` paired standard errors each)."""
    parts, model_side, posterior_side, opposed = [], [], [], []
    for k, run in runs.items():
        bound, nll, kl = (paired_difference(diagonal, run, q) for q in ("bound", "nll", "kl"))
        parts.append(f"$K = {k}$: {signed(bound)} = {nll[0]:+.2f} {'-' if kl[0] < 0 else '+'} {abs(kl[0]):.2f}")
        (model_side if abs(nll[0]) >= abs(kl[0]) else posterior_side).append(k)
        if nll[0] > SIGNIFICANT * nll[1] and kl[0] < -SIGNIFICANT * kl[1]:
            opposed.append(k)
    sides = [
        f"the {side} at {'every length' if len(ks) == len(runs) else _lengths(ks)}"
        for side, ks in (("generative model's", model_side), ("posterior's fit", posterior_side))
        if ks
    ]
    return (
        " The test bound's change from the diagonal model is its change in $-\\ln p(x)$ (the generative model the "
        "run trained) plus its change in the KL to the posterior (the fit of its posterior), paired, nats: "
        + "; ".join(parts)
        + "; the larger part is "
        + " and ".join(sides)
        + "."
        + (
            f" At {_lengths(opposed)} the posterior fits its model better than the diagonal model's does (a "
            f"smaller KL, beyond {SIGNIFICANT:g} standard errors) while $-\\ln p(x)$ is worse: the loss is in the "
            "model it trained."
            if opposed
            else ""
        )
    )


def curve_runs(runs: list[Run | None], compared_length: int = 10) -> list[Run]:
    """The runs whose learning curves the chapter draws: seed 0 of every convolutional flow and of the other
    families at ``compared_length``, and the diagonal model."""
    return [
        r
        for r in runs
        if r is not None
        and r.config["seed"] == 0
        and (r.config["flow"] == "conv" or r.config["length"] in (0, compared_length))
    ]


def plot_training_bound(runs: list[Run], ax: Any = None) -> Any:
    """The training bound (annealed while ``beta < 1``; mean over each logging interval) against updates, one line per
    run: the learning curves that runs of the ``test`` protocol keep (they score the test set once, at the end).
    Within a family the longest flow is solid, shorter ones dashed, then dotted.  ``ax``: a matplotlib axis, or None
    for a new figure; returns the axis."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    for run in runs:
        flow = run.config["flow"] if run.config["length"] > 0 else "none"
        lengths = sorted({r.config["length"] for r in runs if r.config["flow"] == run.config["flow"]})
        rank = lengths.index(run.config["length"])
        history = run.metrics["history"]
        ax.plot(
            [h[0] for h in history],
            [h[2] for h in history],
            color=family_colour(flow),
            alpha=length_alpha(rank, len(lengths)),
            linestyle=length_linestyle(rank, len(lengths)),
            label=model_name(run.config),
        )
    if runs:
        anneal = max(r.config["anneal_updates"] for r in runs)
        after = [h[2] for r in runs for h in r.metrics["history"] if h[0] > anneal]  # beta = 1
        if after:
            ax.set_ylim(min(after) - 1, max(after) + 1)
        ax.axvspan(0, anneal, color="gray", alpha=0.12, label="annealing (β < 1)")
    ax.set_xlabel("updates")
    ax.set_ylabel("training F(x), nats per image")
    if runs:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def plot_training_gap(runs: list[Run], ax: Any = None, styles_from: list[Run] | None = None) -> Any:
    """Each run's training bound minus the diagonal model's (the run of ``runs`` with ``length`` 0) at every update
    both logged once the annealing is over (``beta = 1``), in the styles of ``plot_training_bound``, on a symlog
    scale (linear within 1 nat); a dotted line at twice the annealing length, where ``conv_mnist_reading`` starts.
    ``ax``: a matplotlib axis, or None for a new figure; ``styles_from``: the runs whose lengths set each family's
    line styles (default ``runs``), so that panels drawn from different runs match; returns the axis."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    diagonal = next((r for r in runs if r.config["length"] == 0), None)
    if diagonal is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no diagonal model yet", ha="center", va="center", transform=ax.transAxes)
        return ax
    anneal = diagonal.config["anneal_updates"]
    reference = {h[0]: h[2] for h in diagonal.metrics["history"] if h[0] > anneal}
    for run in runs:
        if run is diagonal:
            continue
        lengths = sorted({r.config["length"] for r in styles_from or runs if r.config["flow"] == run.config["flow"]})
        rank = lengths.index(run.config["length"])
        points = [(h[0], h[2] - reference[h[0]]) for h in run.metrics["history"] if h[0] in reference]
        ax.plot(
            [u for u, _ in points],
            [d for _, d in points],
            color=family_colour(run.config["flow"]),
            alpha=length_alpha(rank, len(lengths)),
            linestyle=length_linestyle(rank, len(lengths)),
            label=model_name(run.config),
        )
    ax.axhline(0, color=family_colour("none"), linewidth=1)
    ax.axvline(2 * anneal, color="gray", linestyle=":", linewidth=1)
    ax.set_yscale("symlog", linthresh=1)  # linear within 1 nat of the diagonal model, logarithmic beyond
    low, high = ax.get_ylim()
    ax.set_yticks([t for t in (-20, -10, -5, -2, -1, -0.5, 0, 0.5, 1, 2, 5, 10, 20) if low <= t <= high])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlim(left=0)
    ax.set_xlabel("updates")
    ax.set_ylabel("training F(x) minus the diagonal\nmodel's (nats, symlog; once β = 1)")
    return ax


def plot_learning_curves(runs: list[Run]) -> Any:
    """``plot_training_bound`` and ``plot_training_gap`` side by side, with one legend; returns the two axes."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    plot_training_bound(runs, ax=axes[0])
    plot_training_gap(runs, ax=axes[1])
    legend = axes[0].get_legend()
    if legend is not None:
        legend.remove()
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper")
    return axes


def _ladder_models(configs: list[dict[str, Any]], runs: list[Run | None]) -> tuple[list[int], dict, set]:
    """The convolutional flow's lengths in the MNIST report ladder, the seed-0 runs by ``(flow, K)`` (the diagonal
    model as ``("none", 0)``), and the ``(flow, K)`` the ladder plans."""
    planned = set(planned_models([c for c in configs if c["seed"] == 0]))
    seed0 = {model: seeds[0] for model, seeds in by_model([r for r in runs if r is not None]).items() if 0 in seeds}
    return sorted(k for f, k in planned if f == "conv"), seed0, planned


def conv_ladder_table(configs: list[dict[str, Any]], runs: list[Run | None]) -> list[dict[str, str]]:
    """The MNIST report ladder (test set, seed 0) at the convolutional flow's lengths: per flow family, the gain
    in ``-ln p(x)`` over the diagonal model, paired on the same images, ± its standard error."""
    lengths, seed0, planned = _ladder_models(configs, runs)
    diagonal = seed0.get(("none", 0))
    rows: list[dict[str, str]] = []
    if not lengths:  # a ladder without the convolutional flow: no table
        return rows
    for flow, name in COMPARED.items():
        row = {"flow": name}
        for k in lengths:
            run = seed0.get((flow, k))
            if (flow, k) not in planned:
                row[f"K={k}"] = "—"
            elif run is None or diagonal is None:
                row[f"K={k}"] = NOT_TRAINED
            else:
                row[f"K={k}"] = signed(paired_difference(diagonal, run))
        rows.append(row)
    return rows


def conv_ladder_reading(configs: list[dict[str, Any]], runs: list[Run | None]) -> str:
    """The convolutional flow against the other families at equal K, and along K, in the MNIST report ladder:
    paired differences in ``-ln p(x)`` on the same test images (``SIGNIFICANT`` standard errors call a
    difference)."""
    lengths, seed0, _ = _ladder_models(configs, runs)
    trained = [k for k in lengths if ("conv", k) in seed0]
    missing = [f"K={k}" for k in lengths if k not in trained]
    if not trained:
        return "No convolutional flow of the MNIST report ladder is trained yet."
    sentences = []
    for k in trained:
        conv = seed0[("conv", k)]
        others = [
            f"{ahead(paired_difference(seed0[(flow, k)], conv))} {name}"
            for flow, name in COMPARED.items()
            if flow != "conv" and (flow, k) in seed0
        ]
        if others:
            sentences.append(f"At $K = {k}$ the convolutional flow is " + "; ".join(others) + ".")
    steps = [(a, b, paired_difference(seed0[("conv", a)], seed0[("conv", b)])) for a, b in zip(trained, trained[1:])]
    for a, b, (d, se) in steps:
        change = "does not change significantly" if abs(d) <= SIGNIFICANT * se else ("falls" if d < 0 else "rises")
        sentences.append(f"From $K = {a}$ to $K = {b}$ its $-\\ln p(x)$ {change} ({d:+.2f} ± {se:.2f} nats, paired).")
    if missing:
        sentences.append(f"Not trained yet: the convolutional flow at {', '.join(missing)}.")
    updates = seed0[("conv", trained[0])].config["updates"]
    return f"With {updates:,} updates (test set, seed 0, paired on the same images): " + " ".join(sentences)
