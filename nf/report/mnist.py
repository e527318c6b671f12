"""Tables and figures of the MNIST chapter.

Our runs beside the paper's Table 2 and Fig. 4, the recipe study, the budget curve and the text that reads them.
"""

from __future__ import annotations

import statistics
from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, gain_difference, metric, paired_difference, per_image, seed_spread
from nf.experiments.mnist_study import paper_recipe
from nf.report.paper import TABLE2_NEG_LOG_LIKELIHOOD
from nf.report.style import family_colour, family_marker
from nf.runs.cache import Run

PAPER_ROW_PREFIX = {"planar": "DLGM+NF", "nice-perm": "DLGM+NICE"}  # the paper's NICE rows: no scaling layer


def paper_key(flow: str, length: int) -> str | None:
    """The Table 2 row of a model, if the paper reports it (planar and NICE-perm at K = 10, 20, 40, 80; no radial,
    scaled or conv rows)."""
    if flow == "none" or length == 0:
        return "DLGM diagonal covariance"
    key = f"{PAPER_ROW_PREFIX[flow]} (k = {length})" if flow in PAPER_ROW_PREFIX else None
    return key if key in TABLE2_NEG_LOG_LIKELIHOOD else None


def table2_models() -> list[tuple[str, int, str]]:
    """``(flow, K, the book's name)`` of every model of the paper's Table 2, in its order (``paper_key`` gives
    each one's row)."""
    lengths = (10, 20, 40, 80)
    return [
        ("planar", 0, "diagonal"),
        *[("planar", k, f"planar K={k}") for k in lengths],
        *[("nice-perm", k, f"NICE-perm K={k}") for k in lengths],
    ]


def model_name(config: dict[str, Any]) -> str:
    return "DLGM diagonal" if config["length"] == 0 else f"DLGM+{config['flow']} K={config['length']}"


def timing(runs: list[Run]) -> list[dict[str, str]]:
    """Milliseconds per training update (held-out evaluations included) on the machine that trained each run."""
    return [
        {
            "model": model_name(r.config) + (f" (seed {r.config['seed']})" if r.config["seed"] else ""),
            "ms per update": f"{1000 * r.metrics['seconds_per_update']:.1f}",
        }
        for r in runs
    ]


def count_label(x: float, _position: int | None = None) -> str:
    """A parameter count as a short tick label: ``500k``, ``2M``."""
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}"


def plot_images(ax, images, rows: int, title: str | None = None) -> None:
    """A grid of 28x28 images (uint8 tensors of shape (N, 784))."""
    n = len(images)
    cols = (n + rows - 1) // rows
    grid = images.reshape(rows, cols, 28, 28).permute(0, 2, 1, 3).reshape(rows * 28, cols * 28)
    ax.imshow(grid.numpy(), cmap="gray_r", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def plot_samples_and_reconstructions(runs: list[Run]):
    """Samples, test images and reconstructions of the longest planar model (else the last run)."""
    import matplotlib.pyplot as plt

    longest = max((r for r in runs if r.config["flow"] == "planar"), key=lambda r: r.config["length"], default=runs[-1])
    images = longest.load_tensors("images.pt")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
    plot_images(axes[0], images["samples"], rows=8, title=f"samples, {model_name(longest.config)}")
    plot_images(axes[1], images["originals"], rows=4, title="test images")
    plot_images(axes[2], images["reconstructions"], rows=4, title="reconstructions")
    return axes


NOT_TRAINED = "not trained yet"


def _pm(value: tuple[float, float]) -> str:
    return f"{value[0]:.2f} ± {value[1]:.2f}"


def signed(value: tuple[float, float]) -> str:
    """A difference with its standard error: ``-0.60 ± 0.03``."""
    return f"{value[0]:+.2f} ± {value[1]:.2f}"


def describe_recipe(settings: dict[str, Any]) -> str:
    """``rmsprop 1e-05, momentum 0.9`` or ``adam 0.001 → 0.0001, clip 100, flow step ×0.1``."""
    text = f"{settings['optimizer']} {settings['learning_rate']:g}"
    if settings.get("final_learning_rate") is not None:
        text += f" → {settings['final_learning_rate']:g}"
    if settings["optimizer"] == "rmsprop":
        text += f", momentum {settings.get('momentum', 0.9):g}"
    if settings.get("clip_grad_norm"):
        text += f", clip {settings['clip_grad_norm']:g}"
    if settings.get("flow_lr_scale", 1.0) != 1.0:
        text += f", flow step ×{settings['flow_lr_scale']:g}"
    return text


def study_table(study: dict[str, Any], runs: dict[str, list[Run | None]]) -> list[dict[str, str]]:
    """One row per study recipe: validation ``-ln p(x)`` of the diagonal model and planar K=20, and the paired gain."""
    diagonal, planar = study["models"].index(["none", 0]), study["models"].index(["planar", 20])
    rows = []
    for name, pair in runs.items():
        a, b = pair[diagonal], pair[planar]
        row = {
            "recipe": name,
            "settings": describe_recipe(study["recipes"][name.split(" @")[0]]),
            "updates": f"{(a or b).config['updates']:,}" if (a or b) else "—",
        }
        row["diagonal −ln p(x)"] = _pm(metric(a, "nll")) if a else NOT_TRAINED
        row["planar K=20 −ln p(x)"] = _pm(metric(b, "nll")) if b else NOT_TRAINED
        both = a is not None and b is not None
        row["change in −ln p(x)"] = signed(paired_difference(a, b)) if both else "—"
        row["change in F(x)"] = signed(paired_difference(a, b, "bound")) if both else "—"
        rows.append(row)
    return rows


def _curve(run: Run, column: int = 4) -> tuple[list[int], list[float]]:
    history = run.metrics["history"]
    return [h[0] for h in history], [h[column] for h in history]


def plot_study_curves(study: dict[str, Any], runs: dict[str, list[Run | None]], axes=None):
    """Validation ``-ln p(x)`` (first 1,000 validation images) against updates per recipe, and planar K=20's gain."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(8, 8), layout="constrained", sharex=True)
    diagonal, planar = study["models"].index(["none", 0]), study["models"].index(["planar", 20])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = set()
    for colour, name in zip(colours, study["recipes"]):
        a, b = runs[name][diagonal], runs[name][planar]
        for run, style, label in ((a, "-", "diagonal"), (b, "--", "planar K=20")):
            if run is not None and run.key not in drawn:  # recipes that differ only in the flow share the diagonal run
                drawn.add(run.key)
                axes[0].plot(*_curve(run), style, color=colour, label=f"{name}: {label}")
        if a is not None and b is not None:
            steps, x = _curve(a)
            _, y = _curve(b)
            axes[1].plot(steps, [q - p for p, q in zip(x, y)], "o-", color=colour, markersize=3, label=name)
    finite = [v for pair in runs.values() for r in pair if r is not None for v in _curve(r)[1]]
    if finite:
        axes[0].set_ylim(min(finite) - 1, min(finite) + 20)
    _zoom_after_annealing(axes[1], study["common"]["anneal_updates"])
    axes[0].set_ylabel("validation −ln p(x) (nats)")
    axes[1].axhline(0, color="gray", linewidth=1)
    axes[1].set_ylabel("planar K=20 minus diagonal (nats)")
    for ax in axes:
        ax.axvspan(0, study["common"]["anneal_updates"], color="gray", alpha=0.12, label="annealing (β < 1)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[-1].set_xlabel("updates")
    return axes


def _zoom_after_annealing(ax, anneal_updates: int, include: tuple[float, ...] = (0.0,)) -> None:
    """Limit the y-axis to what the lines show once ``beta`` has reached 1 (the annealed start swings widely)."""
    values = [y for line in ax.get_lines() for x, y in zip(line.get_xdata(), line.get_ydata()) if x >= anneal_updates]
    if values:
        low, high = min(*values, *include), max(*values, *include)
        ax.set_ylim(low - 0.1 * (high - low) - 0.2, high + 0.1 * (high - low) + 0.2)


def plot_budget_curve(study: dict[str, Any], runs: dict[str, list[Run | None]], ax=None):
    """The gain of planar K=20 over the diagonal model against the training budget, per optimiser.

    Constant learning rate (the paper's optimiser): every point along one pair of runs is a budget (1,000
    validation images); its last point also as the final score on all 10,000 with a paired standard error.
    Decaying learning rate: each budget is its own pair of runs, scored on all 10,000 validation images.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    diagonal, planar = study["models"].index(["none", 0]), study["models"].index(["planar", 20])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    constant = [n for n, r in study["recipes"].items() if r.get("final_learning_rate") is None]
    for colour, name in zip(colours, study["recipes"]):
        pairs = [(n, runs[n]) for n in runs if n == name or n.startswith(f"{name} @")]
        pairs = [(p[diagonal], p[planar]) for _, p in pairs if p[diagonal] is not None and p[planar] is not None]
        if not pairs:
            continue
        if name in constant:
            a, b = pairs[0]
            steps, x = _curve(a)
            ax.plot(
                steps,
                [q - p for p, q in zip(x, _curve(b)[1])],
                "-",
                color=colour,
                alpha=0.6,
                label=f"{name} (along one run)",
            )
        points = sorted((a.config["updates"], paired_difference(a, b)) for a, b in pairs)
        ax.errorbar(
            [u for u, _ in points],
            [d for _, (d, _) in points],
            yerr=[2 * se for _, (_, se) in points],
            fmt="o",
            color=colour,
            capsize=4,
            label=f"{name} (end of run, ± 2 s.e.)",
        )
    ax.axhline(0, color="gray", linewidth=1)
    paper = TABLE2_NEG_LOG_LIKELIHOOD["DLGM+NF (k = 20)"] - TABLE2_NEG_LOG_LIKELIHOOD["DLGM diagonal covariance"]
    ax.axhline(paper, color="k", linestyle=":", label="paper, Table 2 (500,000 updates)")
    _zoom_after_annealing(ax, study["common"]["anneal_updates"], (0.0, paper))
    ax.axvspan(0, study["common"]["anneal_updates"], color="gray", alpha=0.12, label="annealing (β < 1)")
    ax.set_xlabel("updates (training budget)")
    ax.set_ylabel("planar K=20 minus diagonal,\nvalidation −ln p(x) (nats)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def model_key(config: dict[str, Any]) -> tuple[str, int]:
    """The model a run config trains, as ``(flow, K)``; the diagonal model as ``("none", 0)``."""
    return ("none", 0) if config["length"] == 0 else (config["flow"], config["length"])


def planned_models(configs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The models of ``configs`` (``model_key``), each once, in their first order."""
    return list(dict.fromkeys(map(model_key, configs)))


def by_model(runs: list[Run]) -> dict[tuple[str, int], dict[int, Run]]:
    """Runs by model (``model_key``), then by training seed."""
    groups: dict[tuple[str, int], dict[int, Run]] = {}
    for run in runs:
        groups.setdefault(model_key(run.config), {})[run.config["seed"]] = run
    return groups


def ladder_table(configs: list[dict[str, Any]], runs: list[Run | None]) -> list[dict[str, str]]:
    """Table 2 with paired statistics: per model (seed 0) the bound, ``-ln p(x)`` and KL with standard errors, and
    the gain over the diagonal model on the same test images.  The spread over training seeds: ``seed_table``."""
    groups = by_model([r for r in runs if r is not None])
    base = groups.get(("none", 0), {}).get(0)
    rows = []
    for model in planned_models(configs):
        key = paper_key(*model)
        paper = TABLE2_NEG_LOG_LIKELIHOOD.get(key) if key else None
        run = groups.get(model, {}).get(0)
        row = {
            "model": model_name({"flow": model[0], "length": model[1]}),
            "paper −ln p(x)": f"{paper:.1f}" if paper is not None else "—",
            "ours −ln p(x)": _pm(metric(run, "nll")) if run else NOT_TRAINED,
            "gain over diagonal": signed(paired_difference(base, run))
            if run and base and model != ("none", 0)
            else "—",
            "F(x)": _pm(metric(run, "bound")) if run else "—",
            "KL": _pm(metric(run, "kl")) if run else "—",
        }
        rows.append(row)
    return rows


def seed_table(configs: list[dict[str, Any]], runs: list[Run | None]) -> list[dict[str, str]]:
    """The models trained with several seeds: the mean ± standard deviation over seeds of ``-ln p(x)`` and of the
    paired gain over the diagonal model of the same seed."""
    groups = by_model([r for r in runs if r is not None])
    diagonal = groups.get(("none", 0), {})
    rows = []
    for model in planned_models(configs):
        seeds = groups.get(model, {})
        if len(seeds) < 2:
            continue
        nll = [metric(r, "nll")[0] for r in seeds.values()]
        pairs = [(diagonal[s], r) for s, r in seeds.items() if s in diagonal]
        spread = seed_spread(pairs) if model != ("none", 0) and len(pairs) > 1 else None
        rows.append(
            {
                "model": model_name({"flow": model[0], "length": model[1]}),
                "seeds": ", ".join(map(str, sorted(seeds))),
                "−ln p(x), mean ± sd": f"{statistics.fmean(nll):.2f} ± {statistics.stdev(nll):.2f}",
                "gain over diagonal, mean ± sd": f"{spread[0]:+.2f} ± {spread[1]:.2f}" if spread else "—",
            }
        )
    return rows


LADDER_DODGE = 0.6  # flow-length units between neighbouring families' markers in the ladder figure


def plot_ladder(
    configs: list[dict[str, Any]],
    runs: list[Run | None],
    axes: Any = None,
    label: str = "ours",
    hollow: bool = False,
    paper: bool = True,
    legend: bool = True,
) -> list[Any]:
    """Fig. 4 on the test set, seed 0: the bound, the KL and ``-ln p(x)`` against K (± 2 s.e. of each model's mean),
    with the paper's ``-ln p(x)`` dashed; and the paired change in ``-ln p(x)`` from the diagonal model (± 2 paired
    s.e., on the same test images), with the paper's change dashed.  The families' markers at one K are set a
    little apart (at K > 0) so that they do not hide each other; one legend below the panels.  ``axes``: four
    matplotlib axes, or None for a new 2 x 2 figure; returns the four axes.  To draw a second set of runs on the
    same axes: ``label`` starts its legend entries, ``hollow`` draws it with open markers and dotted lines,
    ``paper=False`` leaves out the paper's lines (drawn once), and ``legend=False`` on every call but the last."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(2, 2, figsize=(11, 8.5), layout="constrained")
    axes = list(getattr(axes, "flat", axes))
    groups = by_model([r for r in runs if r is not None])
    diagonal = groups.get(("none", 0), {}).get(0)
    flows = [
        flow
        for flow in dict.fromkeys(c["flow"] for c in configs if c["length"] > 0)
        if any(f == flow and 0 in seeds for (f, _), seeds in groups.items())  # a planned flow with no run: no line
    ]
    paper_flows = []
    for i, flow in enumerate(flows):
        trained = [seeds[0] for (f, _), seeds in sorted(groups.items()) if f == flow and 0 in seeds]
        line = ([diagonal] if diagonal else []) + trained
        dodge = (i - (len(flows) - 1) / 2) * LADDER_DODGE
        lengths = [r.config["length"] + (dodge if r.config["length"] else 0.0) for r in line]
        style = dict(marker=family_marker(flow), capsize=3, color=family_colour(flow), label=f"{label}, {flow}")
        if hollow:
            style.update(markerfacecolor="white", linestyle=":")
        for ax, name in zip(axes, ("bound", "kl", "nll")):
            values = [metric(r, name) for r in line]
            ax.errorbar(lengths, [v for v, _ in values], yerr=[2 * s for _, s in values], **style)
        if diagonal is not None:
            changes = [(0.0, 0.0)] + [paired_difference(diagonal, r) for r in trained]
            axes[3].errorbar(lengths, [d for d, _ in changes], yerr=[2 * s for _, s in changes], **style)
        if paper and paper_key(flow, 10) is not None:
            paper_flows.append(flow)
    for flow in paper_flows:
        paper = [(k, TABLE2_NEG_LOG_LIKELIHOOD[paper_key(flow, k)]) for k in (0, 10, 20, 40, 80)]
        style = dict(linestyle="--", marker="s", color=family_colour(flow), alpha=0.6, label=f"paper, {flow}")
        axes[2].plot(*zip(*paper), **style)
        axes[3].plot([k for k, _ in paper], [v - paper[0][1] for _, v in paper], **style)
    titles = ("F(x) (bound)", "KL(q‖p(z|x)) (biased low)", "−ln p(x)", "−ln p(x) minus the diagonal model's (paired)")
    for ax, title in zip(axes, titles):
        ax.set_xlabel("flow length K")
        ax.set_title(title)
        ax.set_ylabel("nats, test set")
    axes[3].axhline(0.0, color="grey", linewidth=0.8)
    if legend:
        handles, labels = axes[3].get_legend_handles_labels()
        axes[0].figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5))
    return axes


def estimator_bias(runs: list[Run | None]) -> list[dict[str, str]]:
    """How far ``-ln p_hat`` (S = 200) may be above ``-ln p(x)``: the mean of ``nll(S/2) - nll(S)`` per model.

    The importance estimate's bias shrinks like ``1/S``, so this difference estimates the bias left at ``S``;
    the reported KL = F - (-ln p_hat) is low by the same amount.
    """
    rows = []
    for run in runs:
        if run is None:
            continue
        scores = per_image(run)
        if "nll_half" not in scores:
            continue
        gap = scores["nll_half"] - scores["nll"]
        rows.append(
            {
                "model": model_name(run.config) + (f" (seed {run.config['seed']})" if run.config["seed"] else ""),
                "−ln p(x), S/2 minus S": f"{gap.mean().item():.3f} ± {(gap.std() / len(gap) ** 0.5).item():.3f}",
                "KL": _pm(metric(run, "kl")),
            }
        )
    return rows


def study_findings(study: dict[str, Any], runs: dict[str, list[Run | None]]) -> str:
    """The study's numbers in sentences: each recipe's paired gain at the end, and how the gain moved along each
    constant-learning-rate run once ``beta`` had reached 1 (curve points on the first 1,000 validation images)."""
    diagonal, planar = study["models"].index(["none", 0]), study["models"].index(["planar", 20])
    sentences = []
    for name, settings in study["recipes"].items():
        a, b = runs[name][diagonal], runs[name][planar]
        if a is None or b is None:
            sentences.append(f"*{name}*: not trained yet.")
            continue
        d, se = paired_difference(a, b)
        text = (
            f"*{name}* ({b.config['updates']:,} updates): the diagonal model reaches "
            f"{metric(a, 'nll')[0]:.2f} and planar K=20 {metric(b, 'nll')[0]:.2f}, a paired difference of "
            f"{d:+.2f} ± {se:.2f} nats"
        )
        if settings.get("final_learning_rate") is None:
            (steps, x), (_, y) = _curve(a), _curve(b)
            late = [q - p for s, p, q in zip(steps, x, y) if s >= 2 * study["common"]["anneal_updates"]]
            if late:
                text += (
                    f"; from update {2 * study['common']['anneal_updates']:,} on, the difference along the run "
                    f"stays between {min(late):+.2f} and {max(late):+.2f}"
                )
        sentences.append(text + ".")
    paper = TABLE2_NEG_LOG_LIKELIHOOD["DLGM+NF (k = 20)"] - TABLE2_NEG_LOG_LIKELIHOOD["DLGM diagonal covariance"]
    sentences.append(f"Table 2's difference is {paper:+.1f} nats, after 500,000 updates of the paper's optimiser.")
    return " ".join(sentences)


def _better(d: tuple[float, float]) -> str:
    return f"{'better' if d[0] < 0 else 'worse'} by {abs(d[0]):.2f} ± {d[1]:.2f} nats"


def _gain_compared(pairs: dict[str, tuple[Run, Run]], name: str, reference: str, after: str) -> str:
    """How the gain of ``name`` compares with that of ``reference``: ``a larger gain than <after> (by ...)``, or
    no significant change (``gain_difference``, ``SIGNIFICANT`` standard errors)."""
    d, se = gain_difference(pairs[reference], pairs[name])
    if abs(d) <= SIGNIFICANT * se:
        return f"no significant change from {after} (the difference, {d:+.2f} ± {se:.2f} nats, is within " + (
            f"{SIGNIFICANT:g} standard errors)"
        )
    return f"{'a larger' if d < 0 else 'a smaller'} gain than {after} (by {abs(d):.2f} ± {se:.2f} nats)"


def _study_pairs(study: dict[str, Any], runs: dict[str, list[Run | None]]) -> dict[str, tuple[Run, Run]]:
    """The study's trained ``(diagonal, planar K=20)`` pairs, by recipe or budget name."""
    diagonal, planar = study["models"].index(["none", 0]), study["models"].index(["planar", 20])
    return {n: (r[diagonal], r[planar]) for n, r in runs.items() if r[diagonal] is not None and r[planar] is not None}


def _budgets(study: dict[str, Any], pairs: dict[str, tuple[Run, Run]]) -> list[str]:
    """The budget recipe's trained runs (its main run and its other budgets), by increasing number of updates."""
    recipe = study["budgets"]["recipe"]
    names = [n for n in pairs if n == recipe or n.startswith(f"{recipe} @")]
    return sorted(names, key=lambda n: pairs[n][1].config["updates"])


def ahead(d: tuple[float, float]) -> str:
    """``0.38 ± 0.03 nats ahead of`` (d < 0: lower -ln p(x)), ``... behind``, or ``level with`` within
    ``SIGNIFICANT`` standard errors."""
    if abs(d[0]) <= SIGNIFICANT * d[1]:
        return f"level ({d[0]:+.2f} ± {d[1]:.2f} nats) with"
    return f"{abs(d[0]):.2f} ± {d[1]:.2f} nats {'ahead of' if d[0] < 0 else 'behind'}"


def _same_budget(study: dict[str, Any], pairs: dict[str, tuple[Run, Run]]) -> str | None:
    """The budget recipe's run trained for as many updates as the paper's optimiser's, if there is one."""
    slow_recipe = paper_recipe(study)
    if slow_recipe not in pairs:
        return None
    length = pairs[slow_recipe][1].config["updates"]
    same = [n for n in _budgets(study, pairs) if n != slow_recipe and pairs[n][1].config["updates"] == length]
    return same[0] if same else None


def study_reading(study: dict[str, Any], runs: dict[str, list[Run | None]]) -> str:
    """What the study's runs show, phrased from the numbers (nothing typed): the paired gain of planar K=20 under
    the paper's optimiser, under Adam and under Adam with a slower flow; the two optimisers compared at the same
    budget where both were trained to it; the Adam gain at the other budgets.  Two gains differ only if the
    per-image difference of the differences exceeds ``SIGNIFICANT`` standard errors (``gain_difference``).
    """
    slow_recipe, budget = paper_recipe(study), study["budgets"]["recipe"]
    first, *others = study["candidates"]
    pairs = _study_pairs(study, runs)
    budgets = [n for n in runs if n.startswith(f"{budget} @")]
    waiting = [n for n in budgets if n not in pairs]
    if any(n not in pairs for n in (slow_recipe, first, budget, *others)):
        return "*The reading of the study waits for all of its runs.*"
    gain = {n: paired_difference(*pairs[n]) for n in pairs}
    updates = {n: pairs[n][1].config["updates"] for n in pairs}
    text = [
        f"Under the paper's optimiser ({updates[slow_recipe]:,} updates) planar K=20 is {_better(gain[slow_recipe])} "
        f"than the diagonal model; under {first} ({updates[first]:,} updates) it is {_better(gain[first])}."
    ]
    same = _same_budget(study, pairs)
    if same is not None:  # the two optimisers at the same budget, model by model
        diagonal = paired_difference(pairs[same][0], pairs[slow_recipe][0])
        planar = paired_difference(pairs[same][1], pairs[slow_recipe][1])
        text.append(
            f"At the same {updates[same]:,} updates ({same}), the paper's optimiser's diagonal model is "
            f"{ahead(diagonal)} {budget}'s, and its planar K=20 {ahead(planar)} {budget}'s."
        )
    for name in others:
        trend = _gain_compared(pairs, name, first, f"plain {first}")
        text.append(
            f"With the flow's step ten times smaller ({name}) planar K=20 is {_better(gain[name])} than the "
            f"diagonal model: {trend}."
        )
    for name in [n for n in budgets if n in pairs]:
        trend = _gain_compared(pairs, name, budget, f"after {updates[budget]:,}")
        text.append(
            f"With {budget} for {updates[name]:,} updates instead of {updates[budget]:,} planar K=20 is "
            f"{_better(gain[name])} than the diagonal model: {trend}."
        )
    text += [f"The budget *{name}* waits for its runs." for name in waiting]
    return " ".join(text)


def study_conclusion(study: dict[str, Any], runs: dict[str, list[Run | None]]) -> str:
    """What the study says about the chapter's readings (a) to (d), decided from the numbers of ``study_reading``."""
    slow_recipe, budget = paper_recipe(study), study["budgets"]["recipe"]
    first, *others = study["candidates"]
    pairs = _study_pairs(study, runs)
    budgets = _budgets(study, pairs)
    same = _same_budget(study, pairs)
    if same is None or len(budgets) < 2 or any(n not in pairs for n in (first, *others)):
        return "*The conclusion of the study waits for its runs.*"
    gain = {n: paired_difference(*pairs[n]) for n in pairs}
    updates = {n: pairs[n][1].config["updates"] for n in pairs}

    def significant(d: tuple[float, float]) -> bool:
        return abs(d[0]) > SIGNIFICANT * d[1]

    text = ["**What the study says.**"]
    lag = paired_difference(pairs[same][0], pairs[slow_recipe][0])  # the paper optimiser's diagonal model minus ours
    extra = gain_difference(pairs[same], pairs[slow_recipe])  # the paper optimiser's gain minus ours
    if lag[0] > 0 and significant(lag) and extra[0] < 0 and significant(extra):
        text.append(
            f"Readings (a) and (d) hold together: at {updates[same]:,} updates the paper's optimiser leaves the "
            f"diagonal model {lag[0]:.2f} ± {lag[1]:.2f} nats behind {budget}'s, and its flow gains "
            f"{abs(extra[0]):.2f} ± {extra[1]:.2f} nats more; against the better-trained diagonal model of {budget}, "
            f"planar K=20 is {_better(gain[same])}."
        )
        planar = paired_difference(pairs[same][1], pairs[slow_recipe][1])  # planar K=20: paper optimiser's minus ours
        if planar[0] < 0 and significant(planar):
            text.append(
                f"The paper's optimiser also gives the better planar K=20 model ({ahead(planar)} {budget}'s at "
                f"{updates[same]:,} updates); only "
                f"its diagonal model is worse. The report ladder's recipe is chosen for its planar K=20 among the "
                f"modern candidates, so its verdicts on the longer planar flows hold for that recipe; the paper's "
                "optimiser may do better with them, which this study cannot say (it trains planar K=20 only)."
            )
    else:
        text.append(
            f"At {updates[same]:,} updates the study does not show a baseline left behind by the paper's optimiser "
            f"together with a larger gain (diagonal model, paper's optimiser minus {budget}: "
            f"{lag[0]:+.2f} ± {lag[1]:.2f}; gain, paper's minus {budget}'s: {extra[0]:+.2f} ± {extra[1]:.2f}), so "
            "it does not support readings (a) and (d)."
        )
    grows = gain_difference(pairs[budgets[0]], pairs[budgets[-1]])  # the longest budget's gain minus the shortest's
    listed = (
        "planar K=20 minus the diagonal model in −ln p(x), negative where the flow is ahead: "
        + ", ".join(f"{gain[n][0]:+.2f} at {updates[n]:,}" for n in budgets)
        + " updates"
    )
    if grows[0] < 0 and significant(grows):
        text.append(f"Reading (b) holds under {budget}: the gain grows with the budget ({listed}).")
    else:
        trend = (
            f"is smaller at {updates[budgets[-1]]:,} updates than at {updates[budgets[0]]:,}"
            if significant(grows)
            else "does not grow with the budget"
        )
        last = gain[budgets[-1]]
        if last[0] > -SIGNIFICANT * last[1]:
            trend += f", and at {updates[budgets[-1]]:,} updates no gain is left"
        text.append(f"Reading (b) does not hold under {budget}: the flow's gain {trend} ({listed}).")
    for name in others:
        faster = gain_difference(pairs[first], pairs[name])
        if not (faster[0] < 0 and significant(faster)):
            text.append(f"Reading (c) finds no support: a ten times smaller flow step ({name}) gains no more.")
            continue
        short = gain_difference(pairs[name], pairs[slow_recipe])  # the paper optimiser's gain minus this one's
        against = (
            f"its gain stays {abs(short[0]):.2f} ± {short[1]:.2f} nats smaller than the paper optimiser's "
            f"({updates[slow_recipe]:,} updates)"
            if short[0] < 0 and significant(short)
            else f"its gain is not smaller than the paper optimiser's ({updates[slow_recipe]:,} updates)"
        )
        text.append(
            f"Reading (c) holds in part: a ten times smaller flow step ({name}) gains {abs(faster[0]):.2f} ± "
            f"{faster[1]:.2f} nats more than plain {first} at {updates[name]:,} updates; {against}."
        )
    return " ".join(text)
