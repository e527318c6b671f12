"""The convolutional-flow chapter's reading of its runs: the numbers of its discussion, computed."""

from __future__ import annotations

from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, paired_difference
from nf.report.mnist import NOT_TRAINED, ahead, by_model, planned_models, signed
from nf.report.toy import energy_label, parameter_count
from nf.runs.cache import Run

COMPARED = {"conv": "convolutional", "planar": "planar", "radial": "radial", "nice-perm": "NICE-perm"}


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


def conv_mnist_reading(runs: list[Run]) -> str:
    """Convolutional posteriors against the diagonal model on MNIST (the chapter's ``quick`` runs)."""
    nll = {(r.config["flow"], r.config["length"]): (r.metrics["test_nll"], r.metrics["test_nll_se"]) for r in runs}
    diagonal, diagonal_se = nll[("none", 0)]
    lengths = sorted(k for f, k in nll if f == "conv")
    parts = [
        f"$K = {k}$: {nll[('conv', k)][0] - diagonal:+.2f} nats (s.e. about "
        f"{(nll[('conv', k)][1] ** 2 + diagonal_se**2) ** 0.5:.2f}, unpaired)"
        for k in lengths
    ]
    updates = runs[0].config["updates"]
    return (
        f"With {updates:,} updates, $-\\ln p(x)$ of the convolutional posteriors minus the diagonal model's: "
        + "; ".join(parts)
        + "."
    )


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
    rows = []
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


def conv_budget_reading(short_runs: list[Run], configs: list[dict[str, Any]], runs: list[Run | None]) -> str:
    """How the convolutional flow's difference from the diagonal model in ``-ln p(x)`` changes from the chapter's
    short (``quick``) runs to the MNIST report ladder, at each length both have: unpaired in the short runs (they
    store no per-image scores), paired in the ladder; a ladder difference within ``SIGNIFICANT`` standard errors
    counts as closed."""
    short = {(r.config["flow"], r.config["length"]): r.metrics["test_nll"] for r in short_runs}
    lengths, seed0, _ = _ladder_models(configs, runs)
    both = [k for k in lengths if ("conv", k) in short and ("conv", k) in seed0 and ("none", 0) in seed0]
    if not both or ("none", 0) not in short:
        return "No convolutional flow is trained both in the short runs and in the MNIST report ladder yet."
    ladder_updates, short_updates = seed0[("conv", both[0])].config["updates"], short_runs[0].config["updates"]
    parts, stays, grows = [], [], []
    for k in both:
        before = short[("conv", k)] - short[("none", 0)]
        d, se = paired_difference(seed0[("none", 0)], seed0[("conv", k)])
        parts.append(f"$K = {k}$ from {before:+.2f} to {d:+.2f} ± {se:.2f} nats")
        if before > 0 and d > SIGNIFICANT * se:
            stays.append(k)
            if d >= before:
                grows.append(k)
    text = (
        f"From {short_updates:,} to {ladder_updates:,} updates the convolutional flow minus the diagonal model goes: "
        + "; ".join(parts)
        + "."
    )
    if stays:
        text += (
            f" Where the short runs put it behind the diagonal model, at $K = {', '.join(map(str, stays))}$, it stays "
            + ("behind: the gap shrinks with the budget but does not close." if not grows else "behind.")
        )
    return text
