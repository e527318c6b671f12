"""Table 2 and Fig. 4 in the paper's own regime: its optimiser for its 500,000 updates, budget point by budget
point.

The runs (``nf.experiments.mnist_study.regime_configs``) train on all 60,000
training images with the paper's RMSprop (learning rate ``1e-5``, momentum
0.9, constant) and are scored on the test set; with a constant learning rate
every 100,000 updates of a run is the run of that budget, stored on its way
(``regime_runs``), so a run shows its progress before it ends.

**Rules, fixed before any run of this regime reached its first budget point**
(written here, and shown by ``regime_rules``, before the results they judge):

* **A Table 2 number in the paper's regime**: the rule of the report recipe
  (``nf.report.verdicts.table2_number``) on the run at the paper's full budget.
  Until a run gets there its verdict is *not tested*, with the furthest budget
  point as the evidence so far.
* **A gain over the diagonal model** (planar ``K`` minus the diagonal model,
  paired on the same test images, both at the full budget): one training seed
  per model, so the uncertainty is ``u = sqrt(se^2 + s^2)``, the paired
  standard error ``se`` of the test images together with ``s``, the standard
  deviation over training seeds of a paired gain under the report recipe
  (``nf.report.mnist_verdicts.seed_noise``; its size is taken as the size of
  retraining noise for every ``K`` and both recipes).  The claims "planar
  ``K = 20`` beats the diagonal model" and "longer planar flows give a lower
  ``-ln p(x)``" are then decided by ``falls_along`` with every standard error
  replaced by ``u``; until every rung has its full budget, *not tested*, with
  the fall at the furthest budget that every rung with a point has reached
  (``common_budget``) as the evidence so far.
* **Later, before any run reached the full budget**: the report recipe's
  rules gained the training seeds' spread, the margin and *not established*
  (``nf.report.verdicts``); the Table 2 number here is judged with them, its
  ``u`` combining the test images' standard error with the seed spread of a
  model's ``-ln p(x)``, and ``s`` above is the largest paired spread measured.
* **Later, before any run of the regime was trained with a second seed**: the
  regime measures its own spread over training seeds (the diagonal model and
  planar ``K = 20`` retrained with more seeds to a budget point,
  ``nf.experiments.mnist_study.regime_seed_configs``), and its rules use, for
  a model and for a gain alike, the larger of that spread and the report
  recipe's (``regime_noise``): a spread measured in the regime can widen an
  uncertainty, never narrow it.
* **Later, after Fig. 4 under both recipes had shown the regime's budget
  points up to 300,000 updates and before planar ``K = 10``, 40 and 80
  reached the full budget**: Fig. 4's claims, that the bound and the KL fall
  with ``K``, are judged in the regime too, by the report recipe's rule for
  them unchanged (``falls_along`` from ``K = 0`` to the longest planar rung,
  each uncertainty that of a paired difference of that quantity with the
  regime's spread of that quantity, no paper number: the paper shows a plot);
  *not tested*, with the fall at the common budget as the evidence so far,
  until every rung has its full budget.  The claims, the rungs and the rule
  are the report recipe's, unchanged.
* **Across the two recipes** (``across_recipes``): *reproduced under both*,
  *only in the paper's regime*, *only under our recipe*, *in neither*; a
  *partly* on either side is named as such; *not tested* until the paper's
  regime has its full budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, metric, paired_difference
from nf.experiments.cost import UpdateWork, gpu_seconds_estimate
from nf.report.mnist import NOT_TRAINED, model_key, model_name, paper_key, seed_table, signed, table2_models
from nf.report.mnist_verdicts import LADDER_CLAIMS, PAIR_CLAIM, SeedNoise
from nf.report.nice import model_label
from nf.report.paper import TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.style import family_colour, family_marker, length_shade
from nf.report.tables import markdown_table
from nf.report.verdicts import (
    GAIN_FRACTION,
    Verdict,
    falls_along,
    margin,
    not_tested,
    table2_number,
    verdict_columns,
    with_uncertainty,
)
from nf.runs.cache import Run

ACROSS = ("reproduced under both", "only in the paper's regime", "only under our recipe", "in neither")
DIAGONAL = ("none", 0)
SHORT_OF_BUDGET = "not at the full budget yet"  # a run still training: what a not-tested verdict waits for


def _furthest(points: dict[int, Run]) -> tuple[int, Run] | None:
    return max(points.items()) if points else None


def _progress(name: str, points: dict[int, Run], updates: int) -> str:
    """A run short of its full budget and how far it has got: ``"planar K=80 (400,000 of 500,000 updates)"``."""
    return f"{name} ({max(points):,} of {updates:,} updates)"


def _waiting_for(
    rungs: list[tuple[str, int]],
    finished: dict[tuple[str, int], Run],
    models: dict[tuple[str, int], tuple[dict[str, Any], dict[int, Run]]],
    name: Callable[[tuple[str, int]], str],
) -> str:
    """What a verdict on ``rungs`` waits for (``not_tested``'s ``missing``): the runs short of the full budget, each
    with how far it has got, the runs not started, and rungs the regime does not train."""
    short = [m for m in rungs if m not in finished]
    groups = [
        (
            SHORT_OF_BUDGET,
            [_progress(name(m), models[m][1], models[m][0]["updates"]) for m in short if m in models and models[m][1]],
        ),
        ("not trained yet", [name(m) for m in short if m in models and not models[m][1]]),
        ("not a model of the regime", [name(m) for m in short if m not in models]),
    ]
    text = "; ".join(f"{label}: {', '.join(names)}" for label, names in groups if names)
    return text or "a single rung: nothing to compare"


def _trained_to(updates: int, full: int) -> str:
    return f"{updates:,}" if updates == full else f"{updates:,} so far"


def regime_table(configs: list[dict[str, Any]], found: list[dict[int, Run]]) -> list[dict[str, str]]:
    """Per model: how far its run has trained, its test ``-ln p(x)`` there, the paired gain over the diagonal model
    at the furthest budget both have reached with the diagonal model's ``-ln p(x)`` at that budget (so that a gain
    at an early budget is not read against the diagonal model's later number), and the paper's numbers."""
    models = {model_key(c): points for c, points in zip(configs, found)}
    diagonal = models.get(DIAGONAL, {})
    paper_diagonal = TABLE2_NEG_LOG_LIKELIHOOD[paper_key(*DIAGONAL)]
    rows = []
    for config, points in zip(configs, found):
        model, full = model_key(config), config["updates"]
        key = paper_key(*model)
        paper = TABLE2_NEG_LOG_LIKELIHOOD.get(key) if key else None
        furthest = _furthest(points)
        shared = max(set(points) & set(diagonal), default=None)
        gain = baseline = "—"
        if model != DIAGONAL and shared is not None:
            gain = f"{signed(paired_difference(diagonal[shared], points[shared]))} ({shared:,})"
            baseline = "{:.2f} ± {:.2f}".format(*metric(diagonal[shared], "nll"))
        rows.append(
            {
                "model": model_name({"flow": model[0], "length": model[1]}),
                "updates": _trained_to(furthest[0], full) if furthest else NOT_TRAINED,
                "paper −ln p(x)": f"{paper:.1f}" if paper is not None else "—",
                "ours −ln p(x)": "{:.2f} ± {:.2f}".format(*metric(furthest[1], "nll")) if furthest else "—",
                "gain over diagonal (at updates)": gain,
                "diagonal −ln p(x) there": baseline,
                "paper gain": f"{paper - paper_diagonal:+.1f}" if paper is not None and model != DIAGONAL else "—",
            }
        )
    return rows


PAPER_RECIPE_COLUMN = "ours, paper's recipe (updates)"


def with_paper_recipe(
    rows: list[dict[str, str]], configs: list[dict[str, Any]], found: list[dict[int, Run]]
) -> list[dict[str, str]]:
    """Table 2 rows of the report recipe (``nf.report.mnist.ladder_table``) with a column for the paper's recipe
    after ``ours −ln p(x)``: the model's test ``-ln p(x)`` at the furthest budget its paper's-regime run has reached,
    the budget in brackets ("so far" while it trains); "—" for a model the regime does not train."""
    furthest = {model_name(c): _furthest(points) for c, points in zip(configs, found)}
    full = {model_name(c): c["updates"] for c in configs}
    table = []
    for row in rows:
        name = row["model"]
        cell = "—"
        if name in furthest:
            point = furthest[name]
            cell = NOT_TRAINED
            if point is not None:
                cell = "{:.2f} ± {:.2f}".format(*metric(point[1], "nll")) + f" ({_trained_to(point[0], full[name])})"
        items = list(row.items())
        at = [k for k, _ in items].index("ours −ln p(x)") + 1
        table.append(dict(items[:at] + [(PAPER_RECIPE_COLUMN, cell)] + items[at:]))
    return table


def common_budget(configs: list[dict[str, Any]], found: list[dict[int, Run]]) -> tuple[int | None, list[Run | None]]:
    """The largest budget that every model of the regime with a budget point has reached, and each model's run
    there (None for a model with no point yet); ``(None, [None, ...])`` before any point."""
    reached = [max(points) for points in found if points]
    if not reached:
        return None, [None] * len(found)
    budget = min(reached)
    return budget, [points.get(budget) for points in found]


def plot_fig4_both_recipes(
    ladder: tuple[list[dict[str, Any]], list[Run | None]],
    configs: list[dict[str, Any]],
    found: list[dict[int, Run]],
    flow: str = "planar",
) -> list[Any]:
    """Fig. 4 for the diagonal model and ``flow`` under both recipes on the test set (seed 0): the report ladder's
    runs (``ladder``: its configs and runs) with filled markers, and the paper's-regime runs at their
    ``common_budget`` with open markers and dotted lines, the paper's values dashed; one budget per recipe, named in
    the legend."""
    from nf.report.mnist import plot_ladder

    def only(configs: list[dict[str, Any]], runs: list[Run | None]) -> tuple[list, list]:
        keep = [i for i, c in enumerate(configs) if c["length"] == 0 or c["flow"] == flow]
        return [configs[i] for i in keep], [runs[i] for i in keep]

    report_configs, report_runs = only(*ladder)
    axes = plot_ladder(
        report_configs, report_runs, label=f"our recipe, {report_configs[0]['updates']:,} updates", legend=False
    )
    budget, at_budget = common_budget(configs, found)
    if budget is None:
        return plot_ladder([], [], axes, paper=False)
    return plot_ladder(
        *only(configs, at_budget), axes, label=f"paper's recipe, {budget:,} updates", hollow=True, paper=False
    )


def regime_verdicts(
    configs: list[dict[str, Any]], found: list[dict[int, Run]], noise: SeedNoise
) -> list[dict[str, str]]:
    """The paper's planar Table 2 and Fig. 4 claims in its own regime, by the rules of the module docstring;
    ``noise``: the spread over training seeds its rules use (``regime_noise``)."""
    models = {model_key(c): (c, points) for c, points in zip(configs, found)}
    rows = []

    def add(claim: str, paper: str, verdict: Verdict) -> None:
        rows.append({"claim": claim, "paper": paper, **verdict_columns(verdict)})

    def number(run: Run, paper: float) -> Verdict:
        value, se = metric(run, "nll")
        return table2_number(value, paper, with_uncertainty(se, noise.level["nll"]))

    def difference(a: Run, b: Run, quantity: str = "nll") -> tuple[float, float]:
        d, se = paired_difference(a, b, quantity)
        return d, with_uncertainty(se, noise.gain[quantity])

    claim_names = {paper_key(flow, k): name for flow, k, name in table2_models()}  # as ``mnist_verdicts`` names them
    finished: dict[tuple[str, int], Run] = {}
    for model, (config, points) in models.items():
        key = paper_key(*model)
        if key is None or model[0] not in ("none", "planar"):
            continue
        name = claim_names[key]
        paper = TABLE2_NEG_LOG_LIKELIHOOD[key]
        furthest = _furthest(points)
        if furthest is not None and furthest[0] == config["updates"]:
            finished[model] = furthest[1]
            verdict = number(furthest[1], paper)
        elif furthest is not None:
            so_far = number(furthest[1], paper)
            verdict = not_tested(
                _progress(name, points, config["updates"]),
                f"at {furthest[0]:,} updates {so_far.reason}",
                f"so far {so_far.ours} at {furthest[0]:,} updates",
                SHORT_OF_BUDGET,
            )
        else:
            verdict = not_tested(f"{name} to {config['updates']:,} updates")
        add(f"Table 2: {name}, −ln p(x)", f"{paper:.1f}", verdict)
    paper_diagonal = TABLE2_NEG_LOG_LIKELIHOOD[paper_key(*DIAGONAL)]
    ladder = [m for m in models if (m == DIAGONAL or m[0] == "planar") and paper_key(*m) is not None]

    def paper_fall(rungs: list[tuple[str, int]]) -> float:
        """The paper's Table 2 fall in ``-ln p(x)`` from the diagonal model to the last of ``rungs``."""
        return TABLE2_NEG_LOG_LIKELIHOOD[paper_key(*rungs[-1])] - paper_diagonal

    def fall(rungs: list[tuple[str, int]], runs: list[Run], span: str, quantity: str) -> Verdict:
        """The fall of ``quantity`` along ``rungs`` by the rule, its reason naming every step that rises
        (``falls_along``); measured against the paper's fall for ``-ln p(x)`` (Table 2), against none for the
        bound and the KL (Fig. 4, a plot)."""
        steps = [difference(a, b, quantity) for a, b in zip(runs, runs[1:])]
        labels = [f"K={a[1]} → {b[1]}" for a, b in zip(rungs, rungs[1:])]
        paper_value = paper_fall(rungs) if quantity == "nll" else None
        return falls_along(steps, difference(runs[0], runs[-1], quantity), paper_value, span, labels)

    def fall_so_far(rungs: list[tuple[str, int]], quantity: str) -> tuple[str, str]:
        """The fall at the furthest budget every rung with a point has reached, over the rungs there (the
        evidence so far, never the verdict); empty without the diagonal model and a flow at that budget."""
        trained = [m for m in rungs if m in models]
        budget, runs = common_budget([models[m][0] for m in trained], [models[m][1] for m in trained])
        there = [(m, run) for m, run in zip(trained, runs) if run is not None]
        if budget is None or len(there) < 2 or there[0][0] != DIAGONAL:
            return "", ""
        lengths = [k for (_, k), _ in there]
        span = f"K=0 to {lengths[-1]}" + (f" (K={', '.join(map(str, lengths))})" if len(there) > 2 else "")
        so_far = fall([m for m, _ in there], [run for _, run in there], span, quantity)
        shared = f"at {budget:,} updates (the furthest budget its trained rungs share)"
        rising = [  # the steps that would make the verdict "partly" were the rungs finished as they stand
            f"K={a[1]} → {b[1]}"
            for (a, run_a), (b, run_b) in zip(there, there[1:])
            if (step := difference(run_a, run_b, quantity))[0] > 0 and margin(step[0], 0.0, step[1]) > SIGNIFICANT
        ]
        rises = f"; rising decidedly at {', '.join(rising)}" if rising else ""
        return f"at {budget:,} updates {so_far.reason}", f"so far {so_far.ours} {shared}{rises}"

    for claim, rungs, quantity, paper in (
        (PAIR_CLAIM, [DIAGONAL, ("planar", 20)], "nll", f"{paper_fall([DIAGONAL, ('planar', 20)]):+.1f}"),
        (LADDER_CLAIMS["nll"], ladder, "nll", f"{paper_fall(ladder):+.1f}"),
        (LADDER_CLAIMS["bound"], ladder, "bound", "falls (plot)"),  # Fig. 4, by the report recipe's rule
        (LADDER_CLAIMS["kl"], ladder, "kl", "falls (plot)"),
    ):
        if len(rungs) < 2 or any(m not in finished for m in rungs):
            missing = _waiting_for(rungs, finished, models, lambda m: claim_names[paper_key(*m)])
            add(claim, paper, not_tested(missing, *fall_so_far(rungs, quantity), waiting=""))
            continue
        add(claim, paper, fall(rungs, [finished[m] for m in rungs], f"K=0 to {rungs[-1][1]}", quantity))
    return rows


def across_recipes(ours: str, paper_regime: str) -> str:
    """One claim's verdicts under our recipe and in the paper's regime as one reading (module docstring)."""
    if paper_regime == "not tested":
        return "not tested in the paper's regime yet"
    settled = {
        ("reproduced", "reproduced"): ACROSS[0],
        ("not reproduced", "reproduced"): ACROSS[1],
        ("reproduced", "not reproduced"): ACROSS[2],
        ("not reproduced", "not reproduced"): ACROSS[3],
    }
    return settled.get((ours, paper_regime), f"paper's regime: {paper_regime}; our recipe: {ours}")


def regime_noise(ours: SeedNoise, own: SeedNoise) -> SeedNoise:
    """The spread over training seeds the regime's rules use (module docstring): per quantity the larger of our
    recipe's (``ours``, measured on the report ladder) and the regime's own (``own``, from
    ``nf.experiments.mnist_study.regime_seed_runs``; zero until one of its models has two seeds)."""
    if not own.measured_on:
        return ours
    return SeedNoise(
        {q: max(ours.level[q], own.level[q]) for q in ours.level},
        {q: max(ours.gain[q], own.gain[q]) for q in ours.gain},
        "; ".join(filter(None, [ours.measured_on, f"in the paper's regime: {own.measured_on}"])),
    )


def regime_seed_note(ours: SeedNoise, own: SeedNoise, seed_configs: list[dict[str, Any]]) -> str:
    """The regime's own spread over training seeds beside our recipe's, and which one its rules use (Markdown);
    ``seed_configs``: the runs that measure it (``regime_seed_configs``), for what it waits on."""
    if not seed_configs:
        return "The paper's regime measures no spread over training seeds of its own; its rules use our recipe's."
    at = seed_configs[0]["updates"]
    if not own.measured_on:
        models = ", ".join(dict.fromkeys(model_name(c) for c in seed_configs))
        seeds = ", ".join(str(s) for s in dict.fromkeys(c["seed"] for c in seed_configs))
        return (
            f"**The regime's own spread over training seeds** is not measured yet: {models} with seeds {seeds} to "
            f"{at:,} updates are not trained, so its rules use our recipe's spread ({ours.level['nll']:.2f} nats "
            f"for a model's $-\\ln p(x)$, {ours.gain['nll']:.2f} for a gain)."
        )
    used = regime_noise(ours, own)
    return (
        f"**The regime's own spread over training seeds**, at {at:,} updates ({own.measured_on}): "
        f"{own.level['nll']:.2f} nats for a model's $-\\ln p(x)$ and {own.gain['nll']:.2f} for a gain, against "
        f"our recipe's {ours.level['nll']:.2f} and {ours.gain['nll']:.2f}; the regime's rules use the larger, "
        f"{used.level['nll']:.2f} and {used.gain['nll']:.2f}."
    )


def regime_seed_section(
    ours: SeedNoise,
    own: SeedNoise,
    seed_configs: list[dict[str, Any]],
    found: tuple[list[dict[str, Any]], list[Run | None]],
) -> str:
    """The regime's seed table (``seed_table``, once a model has two seeds) and ``regime_seed_note`` (Markdown);
    ``found``: the configs and runs of the seed measurement (``nf.experiments.mnist_study.regime_seed_runs``),
    ``own`` their spread (``seed_noise``)."""
    rows = seed_table(*found)
    table = markdown_table(rows) + "\n\n" if rows else ""
    return table + regime_seed_note(ours, own, seed_configs)


def regime_rules(noise: SeedNoise) -> str:
    """The rules of the module docstring as a Markdown list, from the constants the code uses."""
    spread = f"{noise.gain['nll']:.2f} nats" if noise.measured_on else "not measured yet"
    level = f"{noise.level['nll']:.2f} nats" if noise.measured_on else "not measured yet"
    fig4_spread = (
        f"{noise.gain['bound']:.2f} nats for the bound, {noise.gain['kl']:.2f} for the KL, each the larger of the "
        "report recipe's and the regime's own"
        if noise.measured_on
        else "not measured yet"
    )
    return "\n".join(
        [
            "- **A Table 2 number in the paper's regime**: the report recipe's rule (within 1 nat of the paper's, "
            "or below it, decided beyond two uncertainties of each threshold) on the run at the paper's full "
            f"500,000 updates, its uncertainty combining the test images' standard error with the seed spread of a "
            f"model's $-\\ln p(x)$ ({level}: the larger of the report recipe's and the regime's own, below); until "
            "a run gets there, *not tested*, with its furthest budget point as "
            "the evidence so far.",
            f"- **A gain over the diagonal model**: both models at the full budget, paired on the same test images; "
            f"the uncertainty combines the paired standard error with the spread over training seeds of a paired "
            f"gain ({spread}: the larger of the report recipe's, itself the larger of the spread measured on gains "
            "and $\\sqrt 2$ times a model's as the note on training seeds under *Verdicts* explains, and the "
            "regime's own, below), since each model here has one seed. A fall counts if it exceeds "
            f"{SIGNIFICANT:g} of these uncertainties and is at least "
            f"{GAIN_FRACTION:.0%} of the paper's, with no step along the ladder rising by more than "
            f"{SIGNIFICANT:g} uncertainties. Until every rung gets there, *not tested*, with the fall at the "
            "furthest budget that every rung with a budget point has reached as the evidence so far.",
            "- **The regime's own spread over training seeds** (added before any of its models had a second "
            "seed): where the regime's models retrained with other seeds show a larger spread than the report "
            "recipe's, for a model or for a gain, the uncertainties above use the larger; a spread measured in the "
            "regime can widen them, never narrow them.",
            "- **Fig. 4 in the paper's regime** (added after Fig. 4 under both recipes had shown the regime's budget "
            "points up to 300,000 updates, before planar $K$ = 10, 40 and 80 reached the full budget; the claims, "
            "the rungs and the rule are the report recipe's, unchanged): the claims that the bound "
            "$\\mathcal F(x)$ and the KL fall with $K$ are decided as a fall from $K$ = 0 to the longest planar "
            "flow beyond two uncertainties with no step rising beyond two (no paper number: the paper shows a "
            "plot), each uncertainty combining the paired standard error with the spread over training seeds of "
            f"a paired difference of that quantity ({fig4_spread}); until every rung gets there, *not tested*, "
            "with the fall at the furthest budget its rungs share as the evidence so far.",
            "- **Across the two recipes**: *reproduced under both*, *only in the paper's regime*, *only under our "
            "recipe* or *in neither*; where either recipe's verdict is *partly* or *not established*, the reading "
            "says so.",
        ]
    )


LENGTH_STYLES = (":", "-.", "--", "-")  # a flow's line by its length's rank among the regime's: the longest solid
PAPER_MARK_SHIFT = 1.06  # the paper's values, all at the full budget, are drawn this far right of it to stay clear


def plot_regime(configs: list[dict[str, Any]], found: list[dict[int, Run]], axes: Any = None) -> Any:
    """Test ``-ln p(x)`` of every model of the regime against the updates trained (± two standard errors), and the
    paired gain over the diagonal model at each budget both have reached; the paper's values (at the full budget)
    as hollow squares set just right of it, so they never hide a point of ours there."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.5, 4.2), layout="constrained")
    models = {model_key(c): points for c, points in zip(configs, found)}
    diagonal = models.get(DIAGONAL, {})
    full = configs[0]["updates"]
    paper_diagonal = TABLE2_NEG_LOG_LIKELIHOOD[paper_key(*DIAGONAL)]
    lengths = sorted({c["length"] for c in configs if c["length"]})
    line_style = {0: "-", **dict(zip(reversed(lengths), reversed(LENGTH_STYLES)))}  # beyond the styles: dotted
    for config, points in zip(configs, found):
        model = model_key(config)
        family = "none" if model == DIAGONAL else model[0]
        own = sorted({c["length"] for c in configs if c["flow"] == family and c["length"]})  # the family's lengths
        shade = family_colour(family) if model == DIAGONAL else length_shade(family, own.index(model[1]), len(own))
        style = dict(color=shade, marker=family_marker(family), capsize=3)
        style["linestyle"] = line_style.get(model[1], LENGTH_STYLES[0])
        label = model_name({"flow": model[0], "length": model[1]})
        budgets = sorted(points)
        if budgets:
            values = [metric(points[b], "nll") for b in budgets]
            axes[0].errorbar(budgets, [v for v, _ in values], yerr=[2 * s for _, s in values], label=label, **style)
        shared = sorted(set(points) & set(diagonal)) if model != DIAGONAL else []
        if shared:
            gains = [paired_difference(diagonal[b], points[b]) for b in shared]
            axes[1].errorbar(shared, [d for d, _ in gains], yerr=[2 * s for _, s in gains], **style)
        key = paper_key(*model)
        if key is not None:
            paper = TABLE2_NEG_LOG_LIKELIHOOD[key]
            square = dict(marker="s", markerfacecolor="none", markersize=9, color=shade)
            marks = [(axes[0], paper)] + ([(axes[1], paper - paper_diagonal)] if model != DIAGONAL else [])
            for ax, value in marks:
                ax.plot([PAPER_MARK_SHIFT * full], [value], linestyle="none", **square)
                ax.annotate(
                    model_label(model),
                    (PAPER_MARK_SHIFT * full, value),
                    xytext=(7, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize="x-small",
                    color=shade,
                )
    axes[0].plot(
        [], [], "s", markerfacecolor="none", color="gray", label=f"paper, Table 2 at {full:,} (labelled, set right)"
    )
    axes[1].axhline(0, color="gray", linewidth=1)
    for ax in axes:
        ax.set_xlabel("updates")
        ax.set_xlim(0, full * 1.3)  # room for the paper's values and their labels
        ax.set_xticks(range(0, full + 1, full // 5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:,.0f}k" if x else "0"))
    axes[0].set_ylabel("test −ln p(x) (nats)")
    axes[1].set_ylabel("test −ln p(x) minus the diagonal\nmodel's, paired (nats)")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, loc="outside lower center", ncol=(len(labels) + 1) // 2, fontsize="small")
    return axes


def verdicts_across_recipes(ours: list[dict[str, str]], regime: list[dict[str, str]]) -> list[dict[str, str]]:
    """The claims judged in both: the verdict under our recipe (``nf.report.mnist_verdicts``), in the paper's
    regime, and the two read together (``across_recipes``), with the paper's regime's evidence."""
    ours_by_claim = {row["claim"]: row["verdict"] for row in ours}
    return [
        {
            "claim": row["claim"],
            "paper": row["paper"],
            "our recipe": ours_by_claim.get(row["claim"], "not tested"),
            "paper's regime": row["verdict"],
            "reading": across_recipes(ours_by_claim.get(row["claim"], "not tested"), row["verdict"]),
            "paper's regime, ours": row["ours"],
            "paper's regime, evidence": row["evidence"],
        }
        for row in regime
    ]


def regime_cost(
    configs: list[dict[str, Any]],
    found: list[dict[int, Run]],
    seeds: tuple[list[dict[str, Any]], list[Run | None]] = ([], []),
) -> list[dict[str, str]]:
    """What the paper's regime costs here: per run, the training time its furthest budget point measured (one
    thread, the runs sharing the machine two at a time), the time per 100,000 updates, and the full budget's time
    projected from it; then the runs of its seed measurement (``seeds``: ``nf.experiments.mnist_study.
    regime_seed_runs``, whose seed-0 runs are the regime's own), whose full budget is their own; a last row sums
    the core-hours of the runs trained so far."""
    full = f"hours for {configs[0]['updates']:,} (projected)" if configs else "projected hours"
    runs = list(zip(configs, found))
    runs += [(c, {c["updates"]: run} if run is not None else {}) for c, run in zip(*seeds) if c["seed"] != 0]
    rows, spent, projected = [], 0.0, 0.0
    for config, points in runs:
        model = model_key(config)
        name = model_name({"flow": model[0], "length": model[1]})
        if config["seed"]:
            name += f", seed {config['seed']} (a {config['updates']:,}-update run)"
        row = {"run": name, "trained to": NOT_TRAINED, "hours so far": "—", "hours per 100,000": "—", full: "—"}
        if points:
            updates, run = max(points.items())
            per_update = run.metrics["seconds_per_update"]
            spent += per_update * updates / 3600
            projected += per_update * config["updates"] / 3600
            row.update(
                {
                    "trained to": _trained_to(updates, config["updates"]),
                    "hours so far": f"{per_update * updates / 3600:.1f}",
                    "hours per 100,000": f"{per_update * 100_000 / 3600:.2f}",
                    full: f"{per_update * config['updates'] / 3600:.1f}",
                }
            )
        rows.append(row)
    if spent:
        total = {"run": "the runs trained so far (core-hours)", "trained to": "—", "hours so far": f"{spent:.1f}"}
        rows.append({**total, "hours per 100,000": "—", full: f"{projected:.1f}"})
    return rows


def regime_gpu_estimate(
    configs: list[dict[str, Any]], found: list[dict[int, Run]], work: dict[tuple[str, int], UpdateWork]
) -> list[dict[str, str]]:
    """What a GPU would make of the paper's regime, estimated (``nf.experiments.cost``), never measured: per model,
    the kernels and floating-point operations of one update (``work``, by ``model_key``), which bound decides the
    GPU's time, its seconds per update and hours for the full budget, beside the CPU time measured here so far."""
    rows = []
    for config, points in zip(configs, found):
        model = model_key(config)
        seconds, bound = gpu_seconds_estimate(work[model])
        cpu = max(points.items())[1].metrics["seconds_per_update"] if points else None
        rows.append(
            {
                "run": model_name({"flow": model[0], "length": model[1]}),
                "kernels per update": f"{work[model].kernels:,}",
                "GFLOP per update": f"{work[model].flops / 1e9:.2f}",
                "GPU bound by": bound,
                "GPU ms per update (estimate)": f"{seconds * 1e3:.1f}",
                "CPU ms per update (measured)": f"{cpu * 1e3:.1f}" if cpu is not None else NOT_TRAINED,
                f"GPU hours for {config['updates']:,} (estimate)": f"{seconds * config['updates'] / 3600:.1f}",
            }
        )
    return rows


def gpu_reading(
    configs: list[dict[str, Any]], found: list[dict[int, Run]], work: dict[tuple[str, int], UpdateWork]
) -> str:
    """What the GPU estimate (``regime_gpu_estimate``) says, in words: which bound decides, and how the estimated
    time compares with the CPU time measured here, for the runs that have a budget point."""
    bounds = [gpu_seconds_estimate(w)[1] for w in work.values()]
    launches = bounds.count("launches")
    text = (
        "Every model is bound by its kernel launches: a GPU would spend its time starting kernels, not computing, so "
        "its cost grows with the number of operators an update runs (the flow's length, less what the fused chains "
        "save), not with the arithmetic."
        if launches == len(bounds)
        else f"{launches} of the {len(bounds)} models are bound by their kernel launches, the rest by arithmetic."
    )
    ratios = [
        max(points.items())[1].metrics["seconds_per_update"] / gpu_seconds_estimate(work[model_key(c)])[0]
        for c, points in zip(configs, found)
        if points
    ]
    if ratios:
        text += (
            f" For the runs trained so far the estimate is {min(ratios):.1f} to {max(ratios):.1f} times the speed "
            f"measured here on one CPU thread, if its assumptions hold."
        )
    return text
