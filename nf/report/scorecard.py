"""The reproduction scorecard: every number of the paper beside ours, and a verdict on each MNIST claim.

The functions take the evidence (summaries and runs) that ``nf.book.chapter_runs``
gathers for a profile; they read no files themselves.
"""

from __future__ import annotations

from typing import Any

from nf.experiments.comparisons import metric
from nf.report.mnist import paper_key
from nf.report.mnist_verdicts import mnist_verdicts
from nf.report.paper import TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.toy_verdicts import toy_verdicts
from nf.report.verdicts import VERDICTS
from nf.runs.cache import Run

NOT_RUN = "not run yet"
PLOT = "bound plotted, no number"
QUICK_ONLY = "not run yet under the report protocol (short runs: NICE chapter)"

ToyEvidence = tuple[int, list[dict[str, Any]] | None]  # the longest flow length, its seed-averaged summary or None
MnistEvidence = tuple[dict[str, Any], dict[str, list[Run | None]], list[dict[str, Any]], list[Run | None]]
"""The study, its runs by recipe, and the report ladder's configs and runs (None where missing)."""


def mnist_rows(evidence: MnistEvidence) -> list[dict[str, str]]:
    """Table 2: the paper's -ln p(x) beside ours (importance-sampled, S = 200, test set) where the run exists.

    Planar rows come from the MNIST chapter's report ladder.  The NICE chapter's runs are short runs of the
    first book (``quick`` protocol) and are not mixed into this table.
    """
    _, _, configs, runs = evidence
    ours = {}
    for config, run in zip(configs, runs):
        key = paper_key(config["flow"], config["length"])
        if run is not None and key is not None and config["seed"] == 0:
            nll, se = metric(run, "nll")
            ours[key] = f"-ln p(x) = {nll:.2f} ± {se:.2f} ({config['updates']:,} updates)"
    return [
        {
            "experiment": "MNIST, Table 2",
            "model": model,
            "paper": f"-ln p(x) <= {value:.1f}",
            "ours": ours.get(model, QUICK_ONLY if "NICE" in model else NOT_RUN),
        }
        for model, value in TABLE2_NEG_LOG_LIKELIHOOD.items()
    ]


def mnist_claims(evidence: MnistEvidence) -> list[dict[str, str]]:
    """The MNIST chapter's verdicts on the paper's claims (``nf.report.mnist_verdicts``)."""
    return mnist_verdicts(*evidence)


def claims(toy_summary: list[dict[str, Any]] | None, mnist: MnistEvidence) -> list[dict[str, str]]:
    """Every claim of the paper with its verdict: the toy densities (``nf.report.toy_verdicts``), then MNIST."""
    rows = [{"experiment": "toy densities", **row} for row in toy_verdicts(toy_summary)]
    return rows + [{"experiment": "MNIST", **row} for row in mnist_claims(mnist)]


def claims_at_a_glance(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The claims table without its paper and evidence columns, for the intro."""
    return [{k: r[k] for k in ("experiment", "claim", "verdict")} for r in rows]


def verdict_counts(rows: list[dict[str, str]]) -> str:
    """``"3 reproduced, 2 partly, ..."``: how many claims got each verdict, in the order of ``VERDICTS``."""
    counts = [(v, sum(r["verdict"] == v for r in rows)) for v in VERDICTS]
    return ", ".join(f"{n} {v}" for v, n in counts if n)


def toy_rows(evidence: ToyEvidence) -> list[dict[str, str]]:
    """Fig. 3(d): the paper shows the bound as a plot only; ours as exact KL at the longest flow."""
    longest, summary = evidence
    if summary is None:
        return [{"experiment": "Toy, Fig. 3(d)", "model": f"all flows, K={longest}", "paper": PLOT, "ours": NOT_RUN}]
    return [
        {
            "experiment": f"Toy {r['energy']}, Fig. 3(d)",
            "model": f"{r['family']} K={r['length']}",
            "paper": PLOT,
            "ours": f"KL = {r['kl']:.3f} ± {r['kl_sd']:.3f} nats",
        }
        for r in summary
    ]


def scorecard_rows(toy: ToyEvidence, mnist: MnistEvidence) -> list[dict[str, str]]:
    """One row per result the paper reports, with ours where the experiment has been run."""
    return toy_rows(toy) + mnist_rows(mnist)


def toy_glance(evidence: ToyEvidence) -> list[dict[str, str]]:
    """Exact KL(q||p) at the longest flow, one row per energy and one column per flow family."""
    _, summary = evidence
    table: dict[str, dict[str, str]] = {}
    for r in summary or []:
        table.setdefault(r["energy"], {"target": r["energy"]})[f"{r['family']} K={r['length']}"] = (
            f"{r['kl']:.3f} ± {r['kl_sd']:.3f}"
        )
    return list(table.values())
