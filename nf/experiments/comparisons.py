"""Paired comparisons of scored MNIST runs: differences on the same images, with standard errors.

Every run of the ``validation`` and ``test`` protocols stores its per-image
bound and ``-ln p(x)`` (``scores.pt``), so two runs scored on the same images
are compared image by image: the standard error of a paired difference is
far smaller than that of either mean, since most of the spread is between
images, not between models.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from nf.experiments.mnist import full_config
from nf.runs.cache import Run

SIGNIFICANT = 2.0  # paired standard errors: a smaller difference is not called a difference


def per_image(run: Run) -> dict[str, torch.Tensor]:
    """The run's per-image bound and ``-ln p(x)`` (float64), on the images it was scored on; read once per run
    (a cached run never changes: its folder is complete and checksummed before it is found)."""
    return dict(_scores(run.path))


@functools.lru_cache(maxsize=512)
def _scores(path: Path) -> dict[str, torch.Tensor]:
    scores = torch.load(path / "scores.pt", map_location="cpu", weights_only=True)
    return {k: v.double() for k, v in scores.items()}


def paired_difference(a: Run, b: Run, quantity: str = "nll") -> tuple[float, float]:
    """Mean and standard error of ``b - a`` over the same images; ``quantity``: ``nll``, ``bound`` or ``kl``."""
    protocols = [full_config(r.config)["protocol"] for r in (a, b)]
    if "quick" in protocols:
        raise ValueError(f"quick-protocol runs store no per-image scores: {a.key}, {b.key} cannot be paired")
    if (protocols[0], a.config["test_seed"]) != (protocols[1], b.config["test_seed"]):
        raise ValueError(f"runs {a.key} and {b.key} were scored on different images; they cannot be paired")
    x, y = per_image(a), per_image(b)
    if quantity == "kl":
        x, y = {"kl": x["bound"] - x["nll"]}, {"kl": y["bound"] - y["nll"]}
    d = y[quantity] - x[quantity]
    return d.mean().item(), (d.std() / len(d) ** 0.5).item()


def gain_difference(first: tuple[Run, Run], second: tuple[Run, Run]) -> tuple[float, float]:
    """Mean and standard error of ``(b2 - a2) - (b1 - a1)`` per image: how much the gain of ``second = (a2, b2)``
    differs from that of ``first = (a1, b1)``, all four scored on the same images."""
    for a, b in (first, second, (first[0], second[0])):
        paired_difference(a, b)  # refuses runs scored on different images
    (a1, b1), (a2, b2) = ([per_image(r)["nll"] for r in pair] for pair in (first, second))
    d = (b2 - a2) - (b1 - a1)
    return d.mean().item(), (d.std() / len(d) ** 0.5).item()


def scored_on(run: Run) -> str:
    """``validation`` or ``test``: the images a run's final scores are on."""
    return "validation" if full_config(run.config)["protocol"] == "validation" else "test"


def metric(run: Run, name: str) -> tuple[float, float]:
    """The mean and standard error of ``bound``, ``nll`` or ``kl`` over the run's scored images."""
    m, prefix = run.metrics, scored_on(run)
    return m[f"{prefix}_{name}"], m[f"{prefix}_{name}_se"]


def seed_spread(pairs: list[tuple[Run, Run]], quantity: str = "nll") -> tuple[float, float, int]:
    """Mean and standard deviation over training seeds of the paired difference ``b - a``, and the number of seeds."""
    values = torch.tensor([paired_difference(a, b, quantity)[0] for a, b in pairs], dtype=torch.float64)
    return values.mean().item(), (values.std().item() if len(values) > 1 else float("nan")), len(values)


def _quantity(run: Run, quantity: str) -> torch.Tensor:
    scores = per_image(run)
    return scores["bound"] - scores["nll"] if quantity == "kl" else scores[quantity]


def seed_mean(runs: list[Run], quantity: str = "nll") -> tuple[float, float, int]:
    """A model trained with several seeds, judged on its mean over them: the mean over images of the seeds' average
    per-image ``quantity``, its standard error over the images, and the number of seeds."""
    if not runs:
        raise ValueError("seed_mean needs at least one run")
    for run in runs[1:]:
        paired_difference(runs[0], run)  # refuses runs scored on different images
    values = torch.stack([_quantity(run, quantity) for run in runs]).mean(0)
    return values.mean().item(), (values.std() / len(values) ** 0.5).item(), len(runs)


def seed_mean_difference(pairs: list[tuple[Run, Run]], quantity: str = "nll") -> tuple[float, float, int]:
    """Two models trained with the same seeds: the mean over images of the seeds' average per-image difference
    ``b - a``, its paired standard error over the images, and the number of seeds."""
    if not pairs:
        raise ValueError("seed_mean_difference needs at least one pair of runs")
    differences = []
    for a, b in pairs:
        paired_difference(pairs[0][0], a)  # refuses runs scored on different images
        paired_difference(a, b)
        differences.append(_quantity(b, quantity) - _quantity(a, quantity))
    d = torch.stack(differences).mean(0)
    return d.mean().item(), (d.std() / len(d) ** 0.5).item(), len(pairs)
