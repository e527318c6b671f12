"""The MNIST recipe study and the report ladder built on its choice (validation split; test set touched once).

The study trains the diagonal DLGM and planar ``K = 20`` on the first 50,000
training images under several recipes (the paper's optimiser, Adam with a
decaying learning rate, the same with a slower flow) and watches validation
``-ln p(x)`` along the way (``nf.experiments.mnist``, protocol ``validation``).

**The choice, fixed before the study ran** (``choose_recipe``): the report
recipe is the candidate (``study["candidates"]``, the modern recipes; the
paper's optimiser is too slow for the report budget and is studied in its
own right) whose planar ``K = 20`` run reaches the lowest validation
``-ln p(x)``; a candidate replaces the first one only if it is better by more
than ``SIGNIFICANT`` paired standard errors on the 10,000 validation images.
The report models then train on all 60,000 training images with that recipe
for ``report["updates"]`` updates (protocol ``test``) and are scored once on
the test set.

**The paper's own regime** (``regime_configs``): the same test protocol with
the study's paper recipe (RMSprop, constant learning rate) for the paper's
500,000 updates; each such run stores its budget points on its way
(``nf.experiments.mnist.budget_points``), so ``regime_runs`` finds every
budget a run has passed, before the run ends.  ``regime_seed_configs`` trains some of its models again with other
seeds to a budget point, where ``regime_seed_runs`` gathers them with seed 0's point: the regime's own spread over
training seeds.
"""

from __future__ import annotations

from typing import Any

from nf.experiments.comparisons import SIGNIFICANT, paired_difference
from nf.experiments.mnist import budget_config, budget_points, fit_mnist_runs, mnist_config, run_configs
from nf.runs.cache import Run, config_hash, lookup

RECIPE_KEYS = ("optimizer", "learning_rate", "final_learning_rate", "momentum", "clip_grad_norm", "flow_lr_scale")


def study_configs(study: dict[str, Any], seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """The recipe study's configs (validation protocol), by recipe name, in the order of ``study["models"]``.

    ``study``: ``models`` (``[flow, length]`` pairs), ``common`` settings, ``recipes`` (name -> settings) and
    ``budgets`` (``recipe``: a recipe name, ``updates``: other budgets of that recipe, each its own run, since a
    decaying learning rate makes every budget a different schedule); a budget's recipe name is
    ``"<recipe> @<updates>"``.
    """
    recipes = dict(study["recipes"])
    for updates in study["budgets"]["updates"]:
        recipes[f"{study['budgets']['recipe']} @{updates}"] = {
            **recipes[study["budgets"]["recipe"]],
            "updates": updates,
        }
    return {
        name: run_configs(study["models"], seed=seed, **{**study["common"], **settings})
        for name, settings in recipes.items()
    }


def recipe_decided(study: dict[str, Any], runs: dict[str, list[Run | None]]) -> bool:
    """Whether ``choose_recipe`` has what it compares: every candidate's planar ``K = 20`` run (nothing to compare
    when there is one candidate)."""
    index = study["models"].index(["planar", 20])
    candidates = study["candidates"]
    return len(candidates) == 1 or all(runs[name][index] is not None for name in candidates)


def choose_recipe(study: dict[str, Any], runs: dict[str, list[Run | None]]) -> tuple[str, str]:
    """The report recipe by the rule in the module docstring, and the evidence in words.

    ``runs``: the study's runs by recipe name, in the order of ``study["models"]`` (None where missing).
    """
    index = study["models"].index(["planar", 20])
    first, *others = study["candidates"]
    chosen, evidence = first, []
    for name in others:
        a, b = runs[first][index], runs[name][index]
        if a is None or b is None:
            return first, f"not decided: the planar K=20 runs of {first!r} and {name!r} are not both trained"
        d, se = paired_difference(a, b)
        evidence.append(f"{name!r} minus {first!r}: {d:+.2f} ± {se:.2f} nats")
        if d < -SIGNIFICANT * se and (chosen == first or d < paired_difference(a, runs[chosen][index])[0]):
            chosen = name
    return chosen, "; ".join(evidence)


def paper_recipe(study: dict[str, Any]) -> str | None:
    """The name of the study's recipe with the paper's optimiser (RMSprop), or None."""
    return next((name for name, settings in study["recipes"].items() if settings.get("optimizer") == "rmsprop"), None)


def recipe_settings(study: dict[str, Any], name: str) -> dict[str, Any]:
    """The optimiser settings of a study recipe (what the report models inherit)."""
    return {k: v for k, v in study["recipes"][name].items() if k in RECIPE_KEYS}


def report_configs(study: dict[str, Any], report: dict[str, Any], recipe: str) -> list[dict[str, Any]]:
    """The report ladder: ``report["models"]`` with ``report["seeds"]`` for ``report["seeded"]``, the chosen recipe."""
    common = {**report["common"], **recipe_settings(study, recipe)}
    configs = run_configs(report["models"], seed=0, **common)
    for seed in report["seeds"]:
        if seed != 0:
            configs += run_configs(report["seeded"], seed=seed, **common)
    return configs


def identity_start_configs(study: dict[str, Any], report: dict[str, Any], recipe: str) -> list[dict[str, Any]]:
    """The report ladder's ``report["identity_start"]`` models (seed 0) with every flow layer the identity at the
    first update (``nf.models.flow_start``), otherwise as the ladder: the experiment of
    ``nf.report.identity_start``.  Trained as jobs, like the paper's-regime runs, never inside a chapter."""
    common = {**report["common"], **recipe_settings(study, recipe), "flow_start": "identity"}
    return run_configs(report["identity_start"], seed=0, **common)


def start_check_config(study: dict[str, Any], recipe: str) -> dict[str, Any] | None:
    """The study's ``identity_start`` model (a ``[flow, length]`` pair) as the study trains it under ``recipe``
    (validation protocol, seed 0), but with every flow layer the identity at the first update: whether the start
    would be chosen on the validation split (``nf.report.identity_start.start_choice``).  None if the study names
    no such model.  Trained as a job, like the identity-start runs, never inside a chapter."""
    model = study.get("identity_start")
    if model is None:
        return None
    if model not in study["models"]:
        raise ValueError(f"identity_start={model!r} is not among the study's models {study['models']!r}")
    config = study_configs(study)[recipe][study["models"].index(model)]
    return mnist_config(**{**config, "flow_start": "identity"})


def start_check_run(study: dict[str, Any], recipe: str, **where: Any) -> Run | None:
    """The cached run of ``start_check_config`` (None if the study names no such model or it is not trained yet;
    never trains); ``where``: ``results_dir``, ``device``, ``data_root`` of ``fit_mnist_runs``."""
    config = start_check_config(study, recipe)
    return None if config is None else fit_mnist_runs([config], train=False, **where)[0]


def distinct_configs(by_recipe: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The study's configs without repeats (recipes may share a run), in order of first appearance."""
    return list({config_hash("mnist", c): c for configs in by_recipe.values() for c in configs}.values())


def obtain_study(study: dict[str, Any], train: bool, seed: int = 0, **where: Any) -> dict[str, list[Run | None]]:
    """The study's runs by recipe name, trained where missing if ``train`` (all at once, so they share the workers).

    ``where``: ``results_dir``, ``device``, ``data_root``, ``workers`` of ``fit_mnist_runs``.
    """
    by_recipe = study_configs(study, seed)
    flat = distinct_configs(by_recipe)
    found = dict(zip((config_hash("mnist", c) for c in flat), fit_mnist_runs(flat, train=train, **where)))
    return {name: [found[config_hash("mnist", c)] for c in configs] for name, configs in by_recipe.items()}


def regime_configs(study: dict[str, Any], regime: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's-regime ladder: ``regime["models"]`` (seed 0) with ``regime["common"]`` settings and the study's
    paper recipe (module docstring)."""
    recipe = paper_recipe(study)
    if recipe is None:
        raise ValueError(f"the study has no recipe with the paper's optimiser (rmsprop): {sorted(study['recipes'])}")
    return run_configs(regime["models"], seed=0, **{**regime["common"], **recipe_settings(study, recipe)})


def regime_seed_configs(study: dict[str, Any], regime: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs that measure the regime's own spread over training seeds: each model of ``regime["seeded"]``
    (models of the regime) with each seed of ``regime["seeds"]`` but 0, for ``regime["seeds_at"]`` updates of the
    paper's recipe.  Seed 0 is the regime's own run, at its budget point there; each of these runs is the same run,
    and the same cache entry, as that budget point of a full-length run with its seed.  Empty where the regime
    names no ``seeded`` models.

    Raises:
        ValueError: a seeded model that is not a model of the regime, seeds without 0 (the regime's own run), or a
            ``seeds_at`` that is neither a budget point of the regime's runs nor their full budget.
    """
    seeded = regime.get("seeded", [])
    if not seeded:
        return []
    strangers = [model for model in seeded if model not in regime["models"]]
    if strangers:
        raise ValueError(f"paper_regime.seeded: {strangers} are not models of the regime ({regime['models']})")
    if 0 not in regime["seeds"]:
        raise ValueError(f"paper_regime.seeds: {regime['seeds']} lacks seed 0, the regime's own run")
    base = regime_configs(study, {**regime, "models": seeded})
    at = regime["seeds_at"]
    if at != base[0]["updates"] and at not in budget_points(base[0]):
        raise ValueError(
            f"paper_regime.seeds_at: {at!r} updates is neither the regime's budget ({base[0]['updates']:,}) nor one "
            f"of its budget points ({budget_points(base[0])})"
        )
    return [mnist_config(**{**c, "seed": seed, "updates": at}) for seed in regime["seeds"] if seed != 0 for c in base]


def regime_seed_runs(
    configs: list[dict[str, Any]],
    found: list[dict[int, Run]],
    seed_configs: list[dict[str, Any]],
    results_dir: str | None = None,
) -> tuple[list[dict[str, Any]], list[Run | None]]:
    """Every run of the regime's seed measurement, as ``(configs, runs)``: for each model of ``seed_configs``
    (``regime_seed_configs``), seed 0's run at their budget (the budget point of the regime's run in ``configs`` and
    ``found``, from ``regime_runs``), then the other seeds' cached runs (None where not trained yet; never trains)."""
    if not seed_configs:
        return [], []
    at = seed_configs[0]["updates"]
    seeded = {(c["flow"], c["length"]) for c in seed_configs}
    first = [
        (c if at == c["updates"] else budget_config(c, at), points.get(at))
        for c, points in zip(configs, found)
        if (c["flow"], c["length"]) in seeded
    ]
    others = [(c, lookup("mnist", c, results_dir)) for c in seed_configs]
    return [c for c, _ in first + others], [run for _, run in first + others]


def regime_runs(configs: list[dict[str, Any]], results_dir: str | None = None) -> list[dict[int, Run]]:
    """For each config of ``regime_configs``, its cached runs by number of updates: the budget points it has
    stored so far and, once it has ended, the run itself (never trains)."""
    found = []
    for config in configs:
        points = {b: lookup("mnist", budget_config(config, b), results_dir) for b in budget_points(config)}
        points[config["updates"]] = lookup("mnist", config, results_dir)
        found.append({b: run for b, run in points.items() if run is not None})
    return found
