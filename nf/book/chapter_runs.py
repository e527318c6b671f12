"""From chapter parameters to runs: the run configs a chapter asks for, and the cached runs the summary pages read.

Chapter parameters (``nf.book.profiles``) become run configs here; the cached
runs are looked up, never trained.
"""

from __future__ import annotations

from typing import Any

from nf.book.profiles import MNIST_TRAINING_KEYS, TOY_TRAINING_KEYS, chapter_parameters
from nf.experiments import mnist, toy
from nf.experiments.gaps import fit_gaps, gap_config
from nf.experiments.mnist_study import (
    choose_recipe,
    distinct_configs,
    identity_start_configs,
    recipe_decided,
    regime_configs,
    regime_runs,
    regime_seed_configs,
    regime_seed_runs,
    report_configs,
    start_check_config,
    start_check_run,
    study_configs,
)
from nf.report.gaps import GapLevel, Levels, converged
from nf.report.mnist_verdicts import seed_noise
from nf.report.paper_regime import regime_noise
from nf.report.scorecard import MnistEvidence, RegimeEvidence, ToyEvidence
from nf.report.toy import summarize
from nf.runs.cache import Run, config_hash, lookup


def toy_configs(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The toy configs that a chapter with these ``parameters`` (toy chapter, or the toy part of nice/conv) asks for."""
    p = parameters
    return toy.run_configs(
        p["energies"], p["families"], p["flow_lengths"], p["seeds"], **{k: p[k] for k in TOY_TRAINING_KEYS}
    )


def mnist_configs(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The MNIST configs that the MNIST part of the nice/conv chapters (``quick`` protocol) asks for."""
    return mnist.run_configs(
        parameters["models"], seed=parameters.get("seed", 0), **{k: parameters[k] for k in MNIST_TRAINING_KEYS}
    )


def toy_summary(profile: str = "report") -> list[dict[str, Any]] | None:
    """The seed-averaged summary of all the toy chapter's runs under ``profile`` (None if any is missing)."""
    runs = toy.fit_toys(toy_configs(chapter_parameters("toy", profile)), train=False)
    return None if any(run is None for run in runs) else summarize(runs)


def toy_evidence(profile: str = "report") -> ToyEvidence:
    """The longest toy flow length of the profile and the seed-averaged summary of its runs (None if any is missing)."""
    p = chapter_parameters("toy", profile)
    longest = max(p["flow_lengths"])
    runs = toy.fit_toys(toy_configs({**p, "flow_lengths": [longest]}), train=False)
    return longest, None if any(run is None for run in runs) else summarize(runs)


def _ladder(
    parameters: dict[str, Any],
) -> tuple[dict[str, list], list[dict[str, Any]], list[dict[str, Any]], str]:
    """The MNIST study's cached runs by recipe, the report ladder's configs with the recipe they choose, its
    identity-start configs (``identity_start_configs``) and the recipe."""
    study = parameters["study"]
    study_runs = {
        name: mnist.fit_mnist_runs(configs, train=False)
        for name, configs in study_configs(study, parameters["seed"]).items()
    }
    recipe, _ = choose_recipe(study, study_runs)
    ladder = parameters["ladder"]
    return study_runs, report_configs(study, ladder, recipe), identity_start_configs(study, ladder, recipe), recipe


def mnist_evidence(profile: str = "report") -> MnistEvidence:
    """The MNIST chapter's study, its cached runs by recipe, and the report ladder's configs and cached runs."""
    parameters = chapter_parameters("mnist", profile)
    study_runs, configs, _, _ = _ladder(parameters)
    return parameters["study"], study_runs, configs, mnist.fit_mnist_runs(configs, train=False)


def identity_start_evidence(profile: str = "report") -> tuple[list[dict[str, Any]], list]:
    """The report ladder's identity-start configs (``identity_start_configs``) and their cached runs (None where
    not trained yet; never trains)."""
    _, _, configs, _ = _ladder(chapter_parameters("mnist", profile))
    return configs, mnist.fit_mnist_runs(configs, train=False)


def start_check_evidence(profile: str = "report", mnist: MnistEvidence | None = None) -> tuple[str, Run | None]:
    """The report recipe and the cached run of the recipe study's identity-start check (``start_check_run``; None
    where not trained yet; never trains); ``mnist``: the profile's ``mnist_evidence``, if the caller has it."""
    study, study_runs, _, _ = mnist_evidence(profile) if mnist is None else mnist
    recipe, _ = choose_recipe(study, study_runs)
    return recipe, start_check_run(study, recipe)


def regime_evidence(profile: str = "report", mnist: MnistEvidence | None = None) -> RegimeEvidence:
    """The MNIST chapter's paper's-regime configs, the budget points each has stored, and the spread over training
    seeds its rules use (``nf.report.paper_regime.regime_noise``: the report ladder's, or the regime's own where
    larger); ``mnist``: the profile's ``mnist_evidence``, if the caller has it already (it reads and verifies every
    run of the chapter)."""
    configs, found, seeds = regime_seed_evidence(profile)
    _, _, ladder, runs = mnist_evidence(profile) if mnist is None else mnist
    return configs, found, regime_noise(seed_noise(ladder, runs), seed_noise(*seeds))


def regime_seed_evidence(profile: str = "report") -> tuple[list[dict[str, Any]], list[dict[int, Run]], tuple]:
    """The MNIST chapter's paper's-regime configs, the budget points each has stored, and the runs of its seed
    measurement (``nf.experiments.mnist_study.regime_seed_runs``: configs and runs, None where not trained yet);
    never trains."""
    parameters = chapter_parameters("mnist", profile)
    configs = regime_configs(parameters["study"], parameters["paper_regime"])
    found = regime_runs(configs)
    seeds = regime_seed_configs(parameters["study"], parameters["paper_regime"])
    return configs, found, regime_seed_runs(configs, found, seeds)


def mnist_verdict(claim_start: str, profile: str = "report") -> dict[str, str]:
    """The MNIST chapter's verdict row (claim, paper, verdict, evidence) on the claim starting with ``claim_start``,
    from its cached runs, with ``updates``: the report ladder's budget."""
    from nf.report.mnist_verdicts import mnist_verdicts

    study, study_runs, configs, runs = mnist_evidence(profile)
    rows = [r for r in mnist_verdicts(study, study_runs, configs, runs) if r["claim"].startswith(claim_start)]
    if len(rows) != 1:
        raise ValueError(f"no single MNIST claim starts with {claim_start!r}")
    return {**rows[0], "updates": f"{configs[0]['updates']:,}"}


def gap_models(parameters: dict[str, Any]) -> list[tuple[str, tuple[str, int], dict[str, Any]]]:
    """The models the gaps chapter analyses, as ``(recipe, model, MNIST run config)``: the ``report_models`` of the
    MNIST chapter's report ladder (seed 0, the recipe its study chose: ``"our recipe"``) and the ``regime_models``
    of its paper's regime at the full budget (``"paper's recipe"``)."""
    p = parameters
    mnist_parameters = chapter_parameters("mnist", p["mnist_profile"])
    _, ladder, _, _ = _ladder(mnist_parameters)
    regime = regime_configs(mnist_parameters["study"], mnist_parameters["paper_regime"])
    models = []
    recipes = (("our recipe", ladder, p["report_models"]), ("paper's recipe", regime, p["regime_models"]))
    for recipe, configs, chosen in recipes:
        for flow, length in chosen:
            found = [c for c in configs if (c["flow"], c["length"], c["seed"]) == (flow, length, 0)]
            if not found:
                raise ValueError(f"the MNIST chapter's runs with {recipe} have no model {flow} K={length}")
            models.append((recipe, (flow, length), found[0]))
    return models


def gap_fits(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The local fits of the gaps chapter, each longer than the one before: the standard ``fit``, then each of
    ``check["fits"]`` on top of it.  An analysis with one fit is checked with the next (``nf.report.gaps``)."""
    fit, check = parameters["fit"], parameters["check"]
    if check["images"] > parameters["images"]:
        raise ValueError(
            f"check images={check['images']} exceeds images={parameters['images']}: the check repeats an analysis "
            "on its first images"
        )
    if not check["fits"]:
        raise ValueError("check fits=[] is empty: every analysis needs a longer fit to be checked with")
    return [fit] + [{**fit, **longer} for longer in check["fits"]]


def gap_levels(
    parameters: dict[str, Any], results_dir: str | None = None, data_root: str | None = None, train: bool = False
) -> list[Levels]:
    """Per model of ``gap_models``, its analyses (``nf.experiments.gaps``) and their checks, fit by fit
    (``GapLevel``): the standard fit and its check with the next; where that check says no (``converged``), the
    analysis made again with the check's fit and checked with the one after, up to the longest fit; where it says
    yes before the longest fit, the same analysis checked with every longer fit too (rules 8 and 9), not refitted.
    Cached analyses are read; missing ones are made if ``train`` and the model's MNIST run is cached (else None).
    A model's refits stop at the first analysis or check not made; the checks of a passing analysis with the longer
    fits are all listed, made or not."""
    p, fits = parameters, gap_fits(parameters)
    found = []
    for recipe, model, run_config in gap_models(p):
        levels = []
        ready = train and lookup("mnist", mnist.mnist_config(**run_config), results_dir) is not None

        def config(fit: dict[str, Any], images: int) -> dict[str, Any]:
            return gap_config(run_config, images, p["nll_samples"], p["decoder_flow"], fit)

        for index, (fit, longer) in enumerate(zip(fits, fits[1:])):
            analysis_config, check_config = config(fit, p["images"]), config(longer, p["check"]["images"])
            analysis = fit_gaps(analysis_config, results_dir, data_root, train=ready)
            # a refit's check is read only once the refit is made (the same check may be cached as another
            # model's rule-8 check, or made before the refit by a job queue)
            check = None if analysis is None else fit_gaps(check_config, results_dir, data_root, train=ready)
            levels.append(GapLevel(analysis_config, check_config, analysis, check))
            if analysis is None or check is None:
                break
            if converged(analysis, check):
                for later in fits[index + 2 :]:  # rules 8 and 9: checked with every longer fit, never refitted
                    later_config = config(later, p["check"]["images"])
                    later_check = fit_gaps(later_config, results_dir, data_root, train=ready)
                    levels.append(GapLevel(analysis_config, later_config, analysis, later_check))
                break
        found.append((recipe, model, levels))
    return found


def gap_evidence(profile: str = "report") -> list[Levels]:
    """The gaps chapter's analyses under ``profile``, fit by fit (``gap_levels``; never trains): the summary pages
    read them with ``nf.report.gaps.read_analyses`` and ``convergence_caveats``."""
    return gap_levels(chapter_parameters("gaps", profile))


def paper_updates() -> dict[str, int]:
    """The number of updates of one run under the ``paper`` profile, per experiment (toy, MNIST)."""
    return {
        "toy": chapter_parameters("toy", "paper")["updates"],
        "mnist": chapter_parameters("mnist", "paper")["ladder"]["common"]["updates"],
    }


def chapter_configs(
    chapter: str, profile: str = "report", overrides: dict[str, Any] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every run a chapter asks for under ``profile`` (with papermill-style ``overrides``), as
    ``(experiment, config)``.  For the MNIST chapter: the recipe study, the report ladder with the recipe
    that the cached study runs choose (the first candidate while the study is incomplete), and the paper's-regime
    runs."""
    from nf.book.execute import apply_overrides

    p = apply_overrides(chapter_parameters(chapter, profile), overrides or {})
    if chapter == "toy":
        return [("toy", c) for c in toy_configs(p)]
    if chapter in ("nice", "conv"):
        return [("toy", c) for c in toy_configs(p["toy"])] + [
            ("mnist", c) for c in mnist_configs({**p["mnist"], "seed": p["seed"]})
        ]
    if chapter == "mnist":
        study, ladder, regime, _ = _mnist_runs(p)
        return study + ladder + regime
    if chapter == "gaps":
        levels = [level for _, _, model_levels in gap_levels(p) for level in model_levels]
        configs = [level.analysis_config for level in levels] + [level.check_config for level in levels]
        return [("gaps", c) for c in {config_hash("gaps", c): c for c in configs}.values()]  # a rule-8 level repeats
    return []


def _mnist_runs(parameters: dict[str, Any]) -> tuple[list, list, list, bool]:
    """The MNIST chapter's study runs, report ladder runs (with its identity-start runs) and paper's-regime runs
    (with the runs of its seed measurement; those not in the report ladder) as ``(experiment, config)``, and
    whether the report ladder's recipe is decided (``recipe_decided``)."""
    study_runs, ladder, identity, recipe = _ladder(parameters)
    study = [("mnist", c) for c in distinct_configs(study_configs(parameters["study"], parameters["seed"]))]
    regime = regime_configs(parameters["study"], parameters["paper_regime"])
    regime += regime_seed_configs(parameters["study"], parameters["paper_regime"])
    regime = [("mnist", c) for c in regime if c not in ladder]
    start_check = start_check_config(parameters["study"], recipe)
    ladder = [("mnist", c) for c in ladder + identity + ([start_check] if start_check else [])]
    return study, ladder, regime, recipe_decided(parameters["study"], study_runs)


def configs_to_train(
    chapter: str, profile: str = "report", overrides: dict[str, Any] | None = None
) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    """The chapter's runs whose configs are settled now, and why the others wait (None if none do).

    The MNIST report ladder's recipe is chosen from the recipe study's runs (``choose_recipe``), so until the
    candidates' runs are cached only the study and the paper's-regime runs (the paper's recipe) are settled.
    """
    if chapter == "gaps":  # an analysis needs its MNIST run cached
        runs = chapter_configs(chapter, profile, overrides)
        ready = [(e, c) for e, c in runs if lookup("mnist", c["run"]) is not None]
        waiting = len(runs) - len(ready)
        return ready, (
            f"{waiting} analyses wait for their MNIST runs; run this command again when they are cached"
            if waiting
            else None
        )
    if chapter != "mnist":
        return chapter_configs(chapter, profile, overrides), None
    from nf.book.execute import apply_overrides

    parameters = apply_overrides(chapter_parameters(chapter, profile), overrides or {})
    study, ladder, regime, decided = _mnist_runs(parameters)
    if decided:
        return study + ladder + regime, None
    return study + regime, (
        f"the report ladder ({len(ladder)} runs) waits for the recipe study: "
        "its recipe is chosen from the candidates' runs; run this command again when they are cached"
    )
