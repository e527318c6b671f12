"""The reproduction scorecard: every number of the paper beside ours."""

from __future__ import annotations

from .cache import lookup
from .book.profiles import chapter_parameters
from .mnist import profile_mnist_configs
from .mnist_summary import paper_key
from .paper import TABLE2_NEG_LOG_LIKELIHOOD
from .toy import profile_toy_configs
from .toy_summary import summarize

NOT_RUN = "not run yet"


def mnist_rows(profile: str = "report") -> list[dict[str, str]]:
    """Table 2: the paper's -ln p(x) beside ours (importance-sampled, S = 200) where the run exists.

    Planar rows come from the MNIST chapter's runs, NICE rows from the NICE chapter's NICE-perm runs.
    """
    configs = profile_mnist_configs(chapter_parameters("mnist", profile))
    configs += profile_mnist_configs(chapter_parameters("nice", profile)["mnist"])
    ours = {}
    for config in configs:
        run = lookup("mnist", config)
        key = paper_key(config["flow"], config["length"])
        if run is not None and key is not None:
            m = run.load_json("metrics.json")
            ours[key] = f"-ln p(x) = {m['test_nll']:.2f} ± {m['test_nll_se']:.2f} ({config['updates']:,} updates)"
    return [
        {"experiment": "MNIST, Table 2", "model": model, "paper": f"-ln p(x) <= {value:.1f}", "ours": ours.get(model, NOT_RUN)}
        for model, value in TABLE2_NEG_LOG_LIKELIHOOD.items()
    ]


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
