"""The reproduction scorecard: every number of the paper beside ours."""

from __future__ import annotations

from .cache import lookup
from .book.profiles import chapter_parameters
from .mnist_study import cached, choose_recipe, metric, mnist_verdicts, report_configs, study_configs
from .mnist_summary import paper_key
from .paper import TABLE2_NEG_LOG_LIKELIHOOD
from .toy import profile_toy_configs
from .toy_summary import summarize

NOT_RUN = "not run yet"
QUICK_ONLY = "not run yet under the report protocol (short runs: NICE chapter)"


def mnist_evidence(profile: str = "report") -> tuple[dict, dict, list[dict], list]:
    """The MNIST chapter's study, its cached runs by recipe, and the report ladder's configs and cached runs."""
    parameters = chapter_parameters("mnist", profile)
    study = parameters["study"]
    study_runs = {name: cached(configs) for name, configs in study_configs(study, parameters["seed"]).items()}
    recipe, _ = choose_recipe(study, study_runs)
    configs = report_configs(study, parameters["ladder"], recipe)
    return study, study_runs, configs, cached(configs)


def mnist_rows(profile: str = "report") -> list[dict[str, str]]:
    """Table 2: the paper's -ln p(x) beside ours (importance-sampled, S = 200, test set) where the run exists.

    Planar rows come from the MNIST chapter's report ladder.  The NICE chapter's runs are short runs of the
    first book (``quick`` protocol) and are not mixed into this table.
    """
    _, _, configs, runs = mnist_evidence(profile)
    ours = {}
    for config, run in zip(configs, runs):
        key = paper_key(config["flow"], config["length"])
        if run is not None and key is not None and config["seed"] == 0:
            nll, se = metric(run, "nll")
            ours[key] = f"-ln p(x) = {nll:.2f} ± {se:.2f} ({config['updates']:,} updates)"
    return [
        {"experiment": "MNIST, Table 2", "model": model, "paper": f"-ln p(x) <= {value:.1f}",
         "ours": ours.get(model, QUICK_ONLY if "NICE" in model else NOT_RUN)}
        for model, value in TABLE2_NEG_LOG_LIKELIHOOD.items()
    ]


def mnist_claims(profile: str = "report") -> list[dict[str, str]]:
    """The MNIST chapter's verdicts on the paper's claims, from the cached runs."""
    study, study_runs, configs, runs = mnist_evidence(profile)
    return mnist_verdicts(study, study_runs, configs, runs)


def _longest_toy_summary(profile: str) -> tuple[int, list[dict] | None]:
    """The flow length and the seed-averaged summary of the longest toy flows, or None if not all are cached."""
    p = chapter_parameters("toy", profile)
    longest = max(p["flow_lengths"])
    runs = [lookup("toy", c) for c in profile_toy_configs({**p, "flow_lengths": [longest]})]
    return longest, None if any(run is None for run in runs) else summarize(runs)


def toy_rows(profile: str = "report") -> list[dict[str, str]]:
    """Fig. 3(d): the paper shows the bound as a plot only; ours as exact KL at the longest flow."""
    longest, summary = _longest_toy_summary(profile)
    if summary is None:
        return [{"experiment": "Toy, Fig. 3(d)", "model": f"all flows, K={longest}", "paper": "plot only", "ours": NOT_RUN}]
    return [
        {"experiment": f"Toy {r['energy']}, Fig. 3(d)", "model": f"{r['family']} K={r['length']}",
         "paper": "plot only", "ours": f"KL = {r['kl']:.3f} ± {r['kl_sd']:.3f} nats"}
        for r in summary
    ]


def scorecard_rows() -> list[dict[str, str]]:
    """One row per result the paper reports, with ours where the experiment has been run."""
    return toy_rows() + mnist_rows()


def toy_glance(profile: str = "report") -> list[dict[str, str]]:
    """Exact KL(q||p) at the longest flow, one row per energy and one column per flow family."""
    _, summary = _longest_toy_summary(profile)
    table: dict[str, dict[str, str]] = {}
    for r in summary or []:
        table.setdefault(r["energy"], {"target": r["energy"]})[f"{r['family']} K={r['length']}"] = f"{r['kl']:.3f} ± {r['kl_sd']:.3f}"
    return list(table.values())
