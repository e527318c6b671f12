"""Where the gap goes: a trained DLGM's inference gap split into approximation and amortisation, image by image.

For the first ``images`` test images of the fixed binarisation (``test_seed``; the same images for every model),
with the trained model's decoder and global parameters fixed (Cremer, Li & Duvenaud, ICML 2018):

    F(x)       the amortised bound: the inference network's variational parameters
    F*(x)      the locally optimised bound: those parameters optimised for the image alone
               (``nf.models.local_bound.locally_optimised_bound``, its convergence rule)
    -ln p(x)   importance sampled, ``nll_samples`` draws from each posterior the analysis has (the proposals):
               the amortised ``q_K``, the locally optimised posterior of ``F*``, and, with ``local_planar``, the
               planar posterior fitted to the decoder (below); per image the lowest of these estimates

    F(x) - (-ln p(x))  =  [ F*(x) - (-ln p(x)) ]  +  [ F(x) - F*(x) ]
       inference gap       approximation gap         amortisation gap

``F`` and ``F*`` are estimated on the same ``final_samples`` draws (their difference has a paired standard error);
``-ln p(x)`` on draws of its own.  Each proposal's estimate ``-ln (1/S) sum_s w_s`` is biased high (Jensen's
inequality: ``E[-ln p_hat] >= -ln p``), by an amount that shrinks like ``1/S`` and grows with the weights' tail:
the amortised ``q_K`` is fitted to no single image, and on some images a few of its draws carry nearly all the
weight, so its estimate there sits well above ``-ln p(x)``; a posterior fitted to the image is a proposal with
lighter tails.  Each proposal's estimate is an upper bound in expectation; per image the lowest is kept.  That
choice favours an estimate that came out low by chance, most of all the amortised one where its weights are
heavy-tailed (``nf.report.gaps.estimate_sensitivity`` shows the readings with other choices).  The lowest estimate
from the first ``S/2`` draws of each proposal minus that from all ``S`` is reported beside the gaps as a rough
size of the bias left at ``S`` (rough: the lowest of the noisier half-draw estimates falls further), with how far
the amortised proposal's estimate alone lies above the one kept.  The analysis counts the images whose locally
optimised bound lies below ``-ln p(x)`` by more than twice the two estimates' combined error (``nll_se``: the
delta-method standard error of the kept estimate, ``std_s(w_s) / (sqrt(S) mean_s(w_s))``, which is at most 1 and
understates the error of heavy-tailed weights).  With the locally optimised posterior among the proposals this
holds by construction (by Jensen's inequality its own estimate lies below the bound estimated on the same draws,
an estimate of ``F*``), so the count
against the amortised proposal's estimate alone is kept too.

**The decoder's question** (``local_planar``: a planar flow length, 0 for none): how much a richer posterior than
the model's own gains on the model's fixed decoder.  ``q_0`` and a planar flow of that length, all of its
parameters fitted to each image alone (``local_planar_bound``, starting at the encoder's ``q_0`` and the identity
flow), on the same draws as ``F*``.  If it barely beats ``F*`` of the model's own family, the decoder has made its
posterior nearly as simple as that family.

Each analysis is a cached entry of its own (experiment ``gaps``), keyed by the analysed run's config and the
settings here, with the per-image numbers (``scores.pt``) and their means with paired standard errors
(``metrics.json``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from nf.experiments.data import BinarizedMNIST
from nf.experiments.mnist import full_config, mnist_config
from nf.experiments.trained import retrain_parameters, trained_model
from nf.models.dlgm import DLGM, log_mean_exp
from nf.models.local_bound import (
    LocalBound,
    LocalFit,
    fitted_log_weights,
    local_planar_bound,
    locally_optimised_bound,
)
from nf.runs.cache import Run, cached_run, config_hash, lookup
from nf.validation import check_int

GAP_IMAGES = 1000
GAP_NLL_SAMPLES = 5000
_NLL_BATCH = 10  # images per pass of the importance sampling


def gap_config(
    run_config: dict[str, Any],
    images: int = GAP_IMAGES,
    nll_samples: int = GAP_NLL_SAMPLES,
    local_planar: int = 0,
    fit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings of one analysis of the MNIST run of ``run_config`` (module docstring), validated: the cache key
    of its entry.  ``fit``: ``LocalFit`` settings that differ from its defaults."""
    check_int("images", images)
    check_int("nll_samples", nll_samples, minimum=2)
    check_int("local_planar", local_planar, minimum=0)
    return {
        "run": mnist_config(**run_config),
        "images": images,
        "nll_samples": nll_samples,
        "local_planar": local_planar,
        "nll_proposals": ["amortised", "local", *(["planar"] if local_planar else [])],
        "fit": dataclasses.asdict(LocalFit(**(fit or {}))),
    }


def nll_estimates(log_w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image ``-ln p(x) ~ -ln (1/S) sum_s w_s`` from log-weights ``log_w`` of shape ``(S, B)``, from their first
    half, and the estimate's delta-method standard error ``std_s(w_s) / (sqrt(S) mean_s(w_s))`` (float64)."""
    log_w = log_w.double()
    weights = (log_w - log_w.max(0).values).exp()
    return {
        "nll": -log_mean_exp(log_w),
        "nll_half": -log_mean_exp(log_w[: len(log_w) // 2]),
        "nll_se": weights.std(0) / (weights.mean(0) * math.sqrt(len(log_w))),
    }


@torch.no_grad()
def amortised_nll(model: DLGM, images: torch.Tensor, samples: int) -> dict[str, torch.Tensor]:
    """``nll_estimates`` with ``samples`` draws of the amortised ``q_K`` per image (the paper's estimator)."""
    parts = []
    for x in images.split(_NLL_BATCH):
        log_w = torch.cat([model.log_importance_weights(x, 500) for _ in range(math.ceil(samples / 500))])
        parts.append(nll_estimates(log_w[:samples]))
    return _joined(parts)


def fitted_nll(
    model: DLGM, fitted: LocalBound, images: torch.Tensor, samples: int, seed: int
) -> dict[str, torch.Tensor]:
    """``nll_estimates`` with ``samples`` fresh draws per image of the posterior fitted to it (``fitted``)."""
    parts = []
    generator = torch.Generator(device=fitted.parameters[0].device).manual_seed(seed)
    for rows in torch.arange(len(images)).split(_NLL_BATCH):
        parameters = tuple(None if t is None else t[rows] for t in fitted.parameters)
        log_w = fitted_log_weights(model.log_joint, fitted.flow, parameters, images[rows], samples, generator)
        parts.append(nll_estimates(log_w))
    return _joined(parts)


def _joined(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-batch estimates joined along the images."""
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def lowest_nll(proposals: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per image the lowest ``-ln p(x)`` of the proposals' estimates with its standard error, and the lowest of their
    half-draw estimates; each proposal's own estimate as ``nll_<proposal>``."""
    names = list(proposals)
    nll = torch.stack([proposals[n]["nll"] for n in names])
    lowest = nll.argmin(0)
    scores = {
        "nll": nll.gather(0, lowest[None])[0],
        "nll_se": torch.stack([proposals[n]["nll_se"] for n in names]).gather(0, lowest[None])[0],
        "nll_half": torch.stack([proposals[n]["nll_half"] for n in names]).min(0).values,
    }
    scores.update({f"nll_{n}": proposals[n]["nll"] for n in names})
    return scores


def analyse(model: DLGM, images: torch.Tensor, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The per-image numbers of the module docstring for ``model`` on ``images``, by ``config`` (``gap_config``)."""
    fit = LocalFit(**config["fit"])
    torch.manual_seed(fit.seed)
    samples = config["nll_samples"]
    proposals = {"amortised": amortised_nll(model, images, samples)}
    local = locally_optimised_bound(model, images, fit)
    proposals["local"] = fitted_nll(model, local, images, samples, fit.seed + 3)
    scores = {
        "bound": local.start_bound.double(),
        "local_bound": local.bound.double(),
        "local_bound_se": local.bound_se.double(),
        "amortisation_se": local.gain_se.double(),
        "steps": local.steps,
        "converged": local.converged,
    }
    if config["local_planar"]:
        planar = local_planar_bound(model, images, config["local_planar"], fit)
        proposals["planar"] = fitted_nll(model, planar, images, samples, fit.seed + 4)
        scores.update(
            planar_bound=planar.bound.double(),
            planar_bound_se=planar.bound_se.double(),
            planar_steps=planar.steps,
            planar_converged=planar.converged,
        )
    return {**lowest_nll(proposals), **scores}


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    """The mean over the images and its standard error."""
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


def summarize_gaps(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """Means over the images with standard errors: the three estimates, the three gaps (each paired, per image),
    the estimate's remaining bias and how far the amortised proposal's estimate lies above it, the share of images
    converged, and the images whose ``F*`` lies below ``-ln p(x)`` by more than twice their combined standard
    error (and below the amortised proposal's estimate alone by more than twice ``F*``'s)."""
    gaps = {
        "inference": scores["bound"] - scores["nll"],
        "approximation": scores["local_bound"] - scores["nll"],
        "amortisation": scores["bound"] - scores["local_bound"],
    }
    summary: dict[str, float] = {}
    for name, values in [
        ("bound", scores["bound"]),
        ("local_bound", scores["local_bound"]),
        ("nll", scores["nll"]),
        *((f"{g}_gap", v) for g, v in gaps.items()),
        ("nll_bias", scores["nll_half"] - scores["nll"]),
        ("nll_amortised_excess", scores["nll_amortised"] - scores["nll"]),
    ]:
        summary[name], summary[f"{name}_se"] = mean_se(values)
    if "planar_bound" in scores:
        summary["planar_bound"], summary["planar_bound_se"] = mean_se(scores["planar_bound"])
        summary["planar_gain"], summary["planar_gain_se"] = mean_se(scores["local_bound"] - scores["planar_bound"])
        summary["planar_converged"] = scores["planar_converged"].double().mean().item()
    summary["converged"] = scores["converged"].double().mean().item()
    summary["max_steps"] = int(scores["steps"].max())
    below = scores["nll"] - scores["local_bound"] > 2 * torch.hypot(scores["local_bound_se"], scores["nll_se"])
    summary["below_nll"] = int(below.sum())
    below_amortised = scores["nll_amortised"] - scores["local_bound"] > 2 * scores["local_bound_se"]
    summary["below_amortised_nll"] = int(below_amortised.sum())  # the check with the amortised estimate alone
    return summary


def fit_gaps(
    config: dict[str, Any], results_dir: str | Path | None = None, data_root: str | None = None, train: bool = True
) -> Run | None:
    """The cached analysis of ``config`` (``gap_config``), made if missing and ``train`` (else None).  Its MNIST
    run must be cached; the trained model is the run's stored parameters, or those of its retraining
    (``nf.experiments.trained``), retrained here if missing."""
    found = lookup("gaps", config, results_dir)
    if found is not None or not train:
        return found
    run = lookup("mnist", config["run"], results_dir)
    if run is None:
        raise ValueError(f"the MNIST run {config_hash('mnist', config['run'])} is not cached: train it first")

    def write(config: dict[str, Any], folder: Path, checkpoint: Path) -> None:
        if not (run.path / "parameters.pt").exists():
            retrain_parameters(run, results_dir, data_root=data_root)
        model = trained_model(run, results_dir)
        images = BinarizedMNIST("test", "fixed", seed=full_config(run.config)["test_seed"], root=data_root).images()
        images = images[: config["images"]].to(next(model.parameters()).dtype)
        start = time.perf_counter()
        scores = analyse(model, images, config)
        torch.save(scores, folder / "scores.pt")
        summary = {**summarize_gaps(scores), "seconds": time.perf_counter() - start}
        (folder / "metrics.json").write_text(json.dumps(summary, indent=1))

    return cached_run("gaps", config, write, results_dir)
