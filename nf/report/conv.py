"""The convolutional-flow chapter's reading of its runs: the numbers of its discussion, computed."""

from __future__ import annotations

from typing import Any

from nf.report.toy import energy_label, parameter_count
from nf.runs.cache import Run


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
