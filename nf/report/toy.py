"""The toy chapter's tables: the normalising constants of U1-U4 and the summaries of many toy runs (Fig. 3d)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from torch import Tensor

from nf.experiments.toy import ToyFlow
from nf.models.quadrature import DEFAULT_CELLS, DEFAULT_HALF_WIDTH, log_normalizer
from nf.runs.cache import Run


def parameter_count(family: str, length: int) -> int:
    """Trainable parameters of a toy ``q_K`` (base mean and scale included)."""
    return sum(p.numel() for p in ToyFlow(family, length).parameters())


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (energy, family, length): mean and standard deviation over seeds.

    Keys: energy, family, length, seeds, free_energy, free_energy_sd, kl, kl_sd, kl_min and kl_max (the lowest
    and highest seed), kl_se (the largest Monte-Carlo standard error among the seeds), seconds_per_1000,
    parameters.
    """
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        c = run.config
        groups[(c["energy"], c["family"], c["length"])].append(run.metrics)
    rows = []
    for (energy, family, length), metrics in groups.items():
        free_energy, free_energy_sd = _mean_sd([m["free_energy"] for m in metrics])
        kls = [m["kl"] for m in metrics]
        kl, kl_sd = _mean_sd(kls)
        rows.append(
            {
                "energy": energy,
                "family": family,
                "length": length,
                "seeds": len(metrics),
                "free_energy": free_energy,
                "free_energy_sd": free_energy_sd,
                "kl": kl,
                "kl_sd": kl_sd,
                "kl_min": min(kls),
                "kl_max": max(kls),
                "kl_se": max(m["free_energy_se"] for m in metrics),
                "seconds_per_1000": statistics.fmean(m["seconds_per_1000_updates"] for m in metrics),
                "parameters": parameter_count(family, length),
            }
        )
    return rows


def results_table(rows: list[dict[str, Any]], energy: str) -> list[dict[str, str]]:
    """Display rows (rounded) for one energy: free energy and KL, mean +- sd over seeds, and the largest
    Monte-Carlo standard error of a single run's estimate."""
    return [
        {
            "flow": f"{r['family']} K={r['length']}",
            "parameters": str(r["parameters"]),
            "free energy": f"{r['free_energy']:.2f} ± {r['free_energy_sd']:.2f}",
            "KL(q‖p)": f"{r['kl']:.3f} ± {r['kl_sd']:.3f}",
            "largest MC s.e.": f"{r['kl_se']:.3f}",
        }
        for r in rows
        if r["energy"] == energy
    ]


def timing_table(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Seconds per 1,000 updates by family and length (averaged over energies and seeds)."""
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows:
        times[(r["family"], r["length"])].append(r["seconds_per_1000"])
    return [
        {"flow": f"{family} K={length}", "seconds per 1,000 updates": f"{statistics.fmean(v):.1f}"}
        for (family, length), v in times.items()
    ]


def fig3_models(runs: list[Run], seed: int) -> tuple[list[str], dict[tuple[str, str], ToyFlow]]:
    """Column labels (family, length) and the trained flows of ``seed`` by (energy, column), for ``plot_fig3``."""
    from nf.experiments.toy import load_toy_model

    chosen = [r for r in runs if r.config["seed"] == seed]
    columns = list(dict.fromkeys(f"{r.config['family']} K={r.config['length']}" for r in chosen))
    fitted = {(r.config["energy"], f"{r.config['family']} K={r.config['length']}"): load_toy_model(r) for r in chosen}
    return columns, fitted


def paired_kl_table(rows: list[dict[str, Any]], without: str, with_: str) -> list[dict[str, str]]:
    """Per energy and length: the KL of family ``without`` beside ``with_`` (mean +- sd over seeds) and their ratio."""
    by = {(r["energy"], r["family"], r["length"]): r for r in rows}
    out = []
    for energy, family, length in by:
        if family != without or (energy, with_, length) not in by:
            continue
        a, b = by[(energy, without, length)], by[(energy, with_, length)]
        out.append(
            {
                "energy": energy,
                "K": str(length),
                without: f"{a['kl']:.3f} ± {a['kl_sd']:.3f}",
                with_: f"{b['kl']:.3f} ± {b['kl_sd']:.3f}",
                "ratio": f"{b['kl'] / a['kl']:.2f}",
            }
        )
    return out


def growth_table(
    energies: dict[str, Callable[[Tensor], Tensor]], half_widths: list[float], cells_per_unit: int = 150
) -> list[dict[str, str]]:
    """``ln Z_L`` over ``[-L, L]^2`` for each energy and each ``L``: constant when normalisable, growing when not."""
    return [
        {"L": str(L), **{name: f"{log_normalizer(e, L, int(cells_per_unit * L)):.4f}" for name, e in energies.items()}}
        for L in half_widths
    ]


def convergence_table(energies: dict[str, Callable[[Tensor], Tensor]]) -> list[dict[str, str]]:
    """``ln Z`` on the default grid, and how much a finer (1800^2) or wider ([-9, 9]^2) grid changes it."""
    rows = []
    for name, energy in energies.items():
        log_z = log_normalizer(energy, DEFAULT_HALF_WIDTH, DEFAULT_CELLS)
        rows.append(
            {
                "target": name,
                "ln Z": f"{log_z:.5f}",
                "finer grid": f"{abs(log_normalizer(energy, DEFAULT_HALF_WIDTH, 1800) - log_z):.0e}",
                "wider grid": f"{abs(log_normalizer(energy, 9.0, 1800) - log_z):.0e}",
            }
        )
    return rows


def energy_label(energy: str) -> str:
    """``"U3"`` -> ``"$U_3$"``: a target's name as the prose writes it."""
    return f"${energy[0]}_{energy[1:]}$"


def value_range(values: list[float], fmt: str = ".1f") -> str:
    """``"0.7 to 2.8"``, or one number when the rounded ends agree."""
    low, high = min(values), max(values)
    return f"{low:{fmt}}" if f"{low:{fmt}}" == f"{high:{fmt}}" else f"{low:{fmt}} to {high:{fmt}}"


def share(count: int, total: int, things: str) -> str:
    """How many of ``total`` ``things`` (a plural noun), said plainly: ``"all 4 things"``, ``"both things"``,
    ``"none of the 4 things"``, ``"3 of the 4 things"``; of one thing, ``"the one thing"`` or ``"no thing"``."""
    one = things[:-1] if things.endswith("s") else things
    if total == 1:
        return f"the one {one}" if count else f"no {one}"
    if count == total:
        return f"both {things}" if total == 2 else f"all {total} {things}"
    return f"none of the {total} {things}" if count == 0 else f"{count} of the {total} {things}"


def toy_reading(rows: list[dict[str, Any]], nice: tuple[str, ...] = ("nice-orth", "nice-perm")) -> str:
    """What the toy fits say about the paper's Fig. 3 and 3(d), phrased from the summary ``rows`` (nothing typed).

    Compares the exact KL of planar flows between their shortest and longest length, planar against each NICE
    family at every length, NICE between its middle and longest length, and the parameter counts.
    """
    by = {(r["energy"], r["family"], r["length"]): r for r in rows}
    energies = list(dict.fromkeys(r["energy"] for r in rows))
    lengths = sorted({r["length"] for r in rows if r["family"] == "planar"})
    nice = tuple(f for f in nice if any(r["family"] == f for r in rows))
    if len(lengths) < 2 or not nice:
        return "*The reading waits for planar flows of two lengths and a NICE family.*"
    short, middle, long = lengths[0], lengths[len(lengths) // 2], lengths[-1]
    kl = {key: row["kl"] for key, row in by.items()}
    shrink = [kl[(e, "planar", short)] / kl[(e, "planar", long)] for e in energies]
    text = [
        f"From $K = {short}$ to $K = {long}$ the exact KL of planar flows shrinks by a factor of "
        f"{value_range(shrink)} across the {len(energies)} targets."
    ]
    for k in (long, middle):
        behind = [(e, f) for e in energies for f in nice if kl[(e, f, k)] < kl[(e, "planar", k)]]
        if not behind:
            text.append(f"At $K = {k}$ planar flows have a lower KL than {' and '.join(nice)} on every target.")
        else:
            where = ", ".join(f"{f} on {energy_label(e)}" for e, f in behind)
            cases = share(len(behind), len(energies) * len(nice), "cases")
            text.append(f"At $K = {k}$ NICE is ahead of planar flows in {cases} ({where}).")
    gains = {(e, f): kl[(e, f, middle)] / kl[(e, f, long)] for e in energies for f in nice}
    halves = [f"{f} on {energy_label(e)}" for (e, f), g in gains.items() if g >= 2]
    text.append(
        f"NICE's KL shrinks by a factor of {value_range(list(gains.values()))} from $K = {middle}$ to $K = {long}$"
        + (f"; it at least halves for {', '.join(halves)}." if halves else ".")
    )
    planar_params, nice_params = parameter_count("planar", long), parameter_count(nice[0], long)
    text.append(
        f"At $K = {long}$ a planar flow has {planar_params:,} parameters and a {nice[0]} flow {nice_params:,} "
        f"({nice_params / planar_params:,.0f} times as many: its coupling networks have two hidden layers)."
    )

    def widest(families) -> dict[str, Any]:
        return max((r for r in rows if r["family"] in families), key=lambda r: r["kl_sd"])

    def where(r: dict[str, Any]) -> str:
        return f"{r['family']} with $K = {r['length']}$ on {energy_label(r['energy'])}"

    a, b = widest(nice), widest(("planar",))
    text.append(
        f"The largest spread over seeds is {a['kl_sd']:.2f} nats for NICE ({where(a)}: KL {a['kl']:.2f} ± "
        f"{a['kl_sd']:.2f}) and {b['kl_sd']:.2f} for planar flows ({where(b)})."
    )
    return " ".join(text)
