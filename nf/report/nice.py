"""The NICE chapter's reading of its runs: every number in its discussion, computed (nothing typed)."""

from __future__ import annotations

import math
from typing import Any

from nf.models.dlgm import DLGM
from nf.report.mnist import flow_parameters, paper_key
from nf.report.paper import PAPER_TRAINING, TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.toy import energy_label, parameter_count, share, value_range
from nf.runs.cache import Run

NICE = ("nice-perm", "nice-orth")


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


def nice_mnist_reading(runs: list[Run]) -> str:
    """NICE against planar flows and the diagonal model on MNIST (the chapter's ``quick`` runs)."""
    nll = {(r.config["flow"], r.config["length"]): (r.metrics["test_nll"], r.metrics["test_nll_se"]) for r in runs}
    diagonal = nll[("none", 0)][0]
    lengths = sorted(k for f, k in nll if f == "nice-perm")
    nice = [nll[("nice-perm", k)][0] for k in lengths]
    gaps = [
        nll[("nice-perm", k)][0] - TABLE2_NEG_LOG_LIKELIHOOD[paper_key("nice-perm", k)]
        for k in lengths
        if paper_key("nice-perm", k) in TABLE2_NEG_LOG_LIKELIHOOD
    ]
    ahead = [k for k in lengths if ("planar", k) in nll and nll[("nice-perm", k)][0] < nll[("planar", k)][0]]
    updates = runs[0].config["updates"]
    fraction = updates / PAPER_TRAINING["updates"]
    text = [
        f"With {updates:,} updates NICE-perm is below the diagonal model's $-\\ln p(x)$ at "
        f"{share(sum(v < diagonal for v in nice), len(lengths), 'lengths')}"
        + (" and falls steadily with $K$" if all(a > b for a, b in zip(nice, nice[1:])) else "")
        + (f"; it ends {value_range(gaps)} nats above the paper's NICE rows" if gaps else "")
        + f", at {fraction:.0%} of the paper's updates.",
        f"NICE-perm is ahead of planar flows at {share(len(ahead), len(lengths), 'lengths')}"
        + (f" ($K$ = {', '.join(map(str, ahead))})" if 0 < len(ahead) < len(lengths) else "")
        + ".",
    ]
    extra = flow_parameters(runs)
    params = {(r.config["flow"], r.config["length"]): extra[r.key] for r in runs}
    cheaper = []  # for each planar length, the longest NICE-perm flow that adds fewer parameters
    for kp in sorted(k for f, k in nll if f == "planar"):
        fewer = [kn for kn in lengths if params[("nice-perm", kn)] < params[("planar", kp)]]
        if fewer:
            cheaper.append((max(fewer), kp, nll[("nice-perm", max(fewer))][0] < nll[("planar", kp)][0]))
    if cheaper:
        text.append(
            "At a smaller parameter count: "
            + "; ".join(
                f"NICE-perm $K = {kn}$ adds fewer parameters than planar $K = {kp}$ and reaches a "
                f"{'lower' if lower else 'higher'} $-\\ln p(x)$"
                for kn, kp, lower in cheaper
            )
            + "."
        )
    model = DLGM("planar", 1)
    per_layer = model.flow.n_params
    head = per_layer * (model.flow_head.in_features + 1)
    text.append(
        f"A planar layer needs {per_layer} numbers per image, all from the inference network's head: {head:,} "
        f"head parameters per layer."
    )
    scale = [
        nll[(f"{n}+scale", k)][0] - nll[(n, k)][0]
        for n in NICE
        for k in lengths
        if (f"{n}+scale", k) in nll and (n, k) in nll
    ]
    if scale:
        text.append(
            f"The scaling layer changes $-\\ln p(x)$ by {value_range(scale, '+.2f')} nats, upwards in "
            f"{share(sum(d > 0 for d in scale), len(scale), 'comparisons')}."
        )
    if ("nice-orth", 20) in nll and ("nice-perm", 20) in nll:
        (a, sa), (b, sb) = nll[("nice-orth", 20)], nll[("nice-perm", 20)]
        text.append(
            f"NICE-orth minus NICE-perm at $K = 20$: {a - b:+.2f} ± {math.hypot(sa, sb):.2f} nats "
            "(unpaired: these short runs store no per-image scores)."
        )
    return " ".join(text)
