"""The reproduction scorecard: every toy and MNIST number of the paper beside ours, and a verdict on each claim.

The functions take the evidence (summaries and runs) that ``nf.book.chapter_runs``
gathers for a profile; they read no files themselves.
"""

from __future__ import annotations

from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, metric
from nf.experiments.mnist import full_config
from nf.report.mnist import describe_recipe, paper_key, table2_models
from nf.report.mnist_verdicts import NOT_REPORTED, SeedNoise, mnist_verdicts
from nf.report.paper import PAPER_TRAINING, TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.paper_regime import regime_verdicts, verdicts_across_recipes
from nf.report.toy_verdicts import toy_verdicts
from nf.report.verdicts import VERDICTS
from nf.runs.cache import Run

NOT_RUN = "not trained yet"
NOT_IN_REGIME = "— (not a model of that regime)"
PLOT = "bound plotted, no number"
FIG3D_FAMILIES = ("planar", "nice-orth", "nice-perm")  # the flows of the paper's Fig. 3(d)

ToyEvidence = tuple[int, list[dict[str, Any]] | None]  # the longest flow length, its seed-averaged summary or None
MnistEvidence = tuple[dict[str, Any], dict[str, list[Run | None]], list[dict[str, Any]], list[Run | None]]
"""The study, its runs by recipe, and the report ladder's configs and runs (None where missing)."""
RegimeEvidence = tuple[list[dict[str, Any]], list[dict[int, Run]], SeedNoise]
"""The paper's-regime configs, the budget points each has stored, and the spread over seeds its rules use."""
REGIME_COLUMN = "paper's regime"


def mnist_rows(evidence: MnistEvidence, regime: RegimeEvidence | None = None) -> list[dict[str, str]]:
    """Table 2: the paper's -ln p(x) beside ours (importance-sampled, S = 200, test set) where the run exists.

    Rows come from the MNIST chapter's report ladder (its seed-0 runs, said in each cell), with its recipe and
    budget, and, given ``regime``, from its runs in the paper's regime at the furthest budget reached ("so far"
    while a run trains; a model the regime does not train says so).  The NICE
    chapter's runs are short runs of the book's first version (``quick`` protocol) and are not mixed into this
    table.
    """
    _, _, configs, runs = evidence
    ours = {}
    for config, run in zip(configs, runs):
        key = paper_key(config["flow"], config["length"])
        if run is not None and key is not None and config["seed"] == 0:
            nll, se = metric(run, "nll")
            recipe = describe_recipe(config)
            ours[key] = f"−ln p(x) = {nll:.2f} ± {se:.2f} ({recipe}; {config['updates']:,} updates; seed 0)"
    in_regime = {}
    for config, points in zip(*regime[:2]) if regime is not None else ():
        key = paper_key(config["flow"], config["length"])
        if key is not None:
            in_regime[key] = NOT_RUN
        if points and key is not None:
            updates = max(points)
            nll, se = metric(points[updates], "nll")
            so_far = "" if updates == config["updates"] else " so far"
            in_regime[key] = f"−ln p(x) = {nll:.2f} ± {se:.2f} ({updates:,} updates{so_far})"
    rows = []
    for flow, k, name in table2_models():
        key = paper_key(flow, k)
        row = {
            "experiment": "MNIST, Table 2",
            "model": name,
            "paper": f"−ln p(x) ≤ {TABLE2_NEG_LOG_LIKELIHOOD[key]:.1f}",
            "ours": ours.get(key, NOT_RUN),
        }
        if regime is not None:
            row[f"ours, {REGIME_COLUMN}"] = in_regime.get(key, NOT_IN_REGIME)
        rows.append(row)
    return rows


def mnist_training_note(evidence: MnistEvidence) -> str:
    """How our Table 2 models were trained, beside how the paper's were (from the ladder's configs)."""
    _, _, configs, runs = evidence
    trained = [c for c, r in zip(configs, runs) if r is not None and c["length"] > 0]
    if not trained:
        return "No Table 2 model is trained yet."
    ours = trained[0]
    start = "at the identity" if full_config(ours)["flow_start"] == "identity" else "at random"
    return (
        f"Ours are trained with {describe_recipe(ours)} for {ours['updates']:,} updates, each flow started {start}, "
        f"the paper's with {describe_recipe(PAPER_TRAINING)} for {PAPER_TRAINING['updates']:,}; the MNIST "
        "chapter's recipe study measures what the optimiser changes, and its sensitivity check what the flow's "
        "start changes."
    )


def mnist_claims(evidence: MnistEvidence) -> list[dict[str, str]]:
    """The MNIST chapter's verdicts on the paper's claims (``nf.report.mnist_verdicts``)."""
    return mnist_verdicts(*evidence)


def claims(
    toy_summary: list[dict[str, Any]] | None, mnist: MnistEvidence, regime: RegimeEvidence | None = None
) -> list[dict[str, str]]:
    """Every claim of the paper with its verdict: the toy densities (``nf.report.toy_verdicts``), then MNIST; given
    ``regime``, a column with the MNIST claims read across our recipe and the paper's regime
    (``nf.report.paper_regime.across_recipes``)."""
    rows = [{"experiment": "toy densities", **row} for row in toy_verdicts(toy_summary)]
    rows += [{"experiment": "MNIST", **row} for row in mnist_claims(mnist)]
    if regime is None:
        return rows
    configs, found, noise = regime
    ours = [row for row in rows if row["experiment"] == "MNIST"]
    readings = {}
    for row in verdicts_across_recipes(ours, regime_verdicts(configs, found, noise)):
        number = row["paper's regime, ours"]
        readings[row["claim"]] = row["reading"] + (f"; {number}" if number != "—" else "")
    return [{**row, REGIME_COLUMN: readings.get(row["claim"], "—")} for row in rows]


def claims_at_a_glance(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The claims as one table a reader takes in at a glance: the claim, the paper's number, ours (the number that
    decided, with its uncertainty), the verdict and its margin (in uncertainties), and, beside the paper's-regime
    column, the verdict headed as our recipe's."""
    verdict = "verdict, our recipe" if any(REGIME_COLUMN in r for r in rows) else "verdict"
    keys = ("experiment", "claim", "paper", "ours", "verdict", "margin", REGIME_COLUMN)
    names = {"verdict": verdict, "margin": "margin (u)"}
    return [{names.get(k, k): r[k] for k in keys if k in r} for r in rows]


def claims_evidence(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Each claim with the evidence that decided its verdict (the numbers the rule used), for the scorecard."""
    return [{"claim": r["claim"], "evidence": r["evidence"]} for r in rows]


def toy_caveat(toy_summary: list[dict[str, Any]] | None) -> str:
    """How much the toy verdicts can bear: the number of seeds behind each comparison, said plainly."""
    if not toy_summary:
        return ""
    fewest = min(r["seeds"] for r in toy_summary)
    if fewest < 2:
        return "**Toy evidence.** Some toy model was fitted with one seed: its differences have no standard error."
    return (
        f"**Toy evidence.** Each toy model was fitted with at least {fewest} training seeds; a toy difference's ± "
        f"is its standard error from the seeds' spread. With so few seeds the rule's {SIGNIFICANT:g} standard "
        f"errors are lenient (a t-test with {fewest - 1} to {2 * fewest - 2} degrees of freedom would ask for more), "
        "and the many toy comparisons are not corrected for multiplicity: read a toy verdict that rests on a "
        "difference near the threshold as suggestive."
    )


def verdict_counts(rows: list[dict[str, str]]) -> str:
    """``"3 reproduced (1 of them on a question the paper leaves open), 2 partly, ..."``: how many claims got each
    verdict, in the order of ``VERDICTS``; a claim whose paper column is ``NOT_REPORTED`` is counted apart."""
    parts = []
    for verdict in VERDICTS:
        group = [r for r in rows if r["verdict"] == verdict]
        open_questions = sum(r.get("paper") == NOT_REPORTED for r in group)
        if group:
            aside = f" ({open_questions} of them on a question the paper leaves open)" if open_questions else ""
            parts.append(f"{len(group)} {verdict}{aside}")
    return ", ".join(parts)


def toy_rows(evidence: ToyEvidence) -> list[dict[str, str]]:
    """Fig. 3(d): the paper shows the bound as a plot only; ours as exact KL at the longest flow.  Families the
    paper's figure does not show (radial flows) are marked as ours, with no paper value."""
    longest, summary = evidence
    if summary is None:
        return [{"experiment": "Toy, Fig. 3(d)", "model": f"all flows, K={longest}", "paper": PLOT, "ours": NOT_RUN}]
    return [
        {
            "experiment": f"Toy {r['energy']}, "
            + ("Fig. 3(d)" if r["family"] in FIG3D_FAMILIES else "ours, not in Fig. 3(d)"),
            "model": f"{r['family']} K={r['length']}",
            "paper": PLOT if r["family"] in FIG3D_FAMILIES else "not in the paper",
            "ours": f"KL = {r['kl']:.3f} ± {r['kl_sd']:.3f} nats",
        }
        for r in summary
    ]


def scorecard_rows(
    toy: ToyEvidence, mnist: MnistEvidence, regime: RegimeEvidence | None = None
) -> list[dict[str, str]]:
    """One row per result the paper reports, with ours where the experiment has been run (and, given ``regime``,
    ours in the paper's regime: ``mnist_rows``)."""
    mnist_table = mnist_rows(mnist, regime)
    if regime is None:
        return toy_rows(toy) + mnist_table
    return [{**row, f"ours, {REGIME_COLUMN}": "—"} for row in toy_rows(toy)] + mnist_table


def toy_glance(evidence: ToyEvidence) -> list[dict[str, str]]:
    """Exact KL(q||p) at the longest flow, one row per energy and one column per flow family."""
    _, summary = evidence
    table: dict[str, dict[str, str]] = {}
    for r in summary or []:
        table.setdefault(r["energy"], {"target": r["energy"]})[f"{r['family']} K={r['length']}"] = (
            f"{r['kl']:.3f} ± {r['kl_sd']:.3f}"
        )
    return list(table.values())
