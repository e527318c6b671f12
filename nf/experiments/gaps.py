"""Where the gap goes: a trained DLGM's inference gap split into approximation and amortisation, image by image.

For the first ``images`` test images of the fixed binarisation (``test_seed``; the same images for every model),
with the trained model's decoder and global parameters fixed (Cremer, Li & Duvenaud, ICML 2018):

    F(x)       the amortised bound: the inference network's variational parameters
    F*(x)      the locally optimised bound: those parameters optimised for the image alone
               (``nf.models.local_bound.locally_optimised_bound``, its convergence rule)
    -ln p(x)   importance sampled, ``nll_samples`` draws from each of three posteriors (the proposals), the same
               three for every model: the amortised ``q_K``, the locally optimised posterior of ``F*``, and the
               planar posterior fitted to the decoder (``local_planar`` layers, below); the proposal is chosen per
               image on draws independent of the estimate (cross-fitted, below)

    F(x) - (-ln p(x))  =  [ F*(x) - (-ln p(x)) ]  +  [ F(x) - F*(x) ]
       inference gap       approximation gap         amortisation gap

``F`` and ``F*`` are estimated on the same ``final_samples`` draws (their difference has a paired standard error);
``-ln p(x)`` on draws of its own.  Each proposal's estimate ``-ln (1/S) sum_s w_s`` is biased high (Jensen's
inequality: ``E[-ln p_hat] >= -ln p``), by an amount that shrinks like ``1/S`` and grows with the weights' tail:
the amortised ``q_K`` is fitted to no single image, and on some images a few of its draws carry nearly all the
weight, so its estimate there sits well above ``-ln p(x)``; a posterior fitted to the image is a proposal with
lighter tails.

**Cross-fitted choice** (``cross_fitted_nll``).  Keeping per image the lowest of the proposals' estimates would
favour an estimate that came out low by chance.  Instead each proposal's draws are split in two halves; per image
the proposal with the lowest estimate on the first half is scored on the second half, the one lowest on the second
half is scored on the first, and the two scores are averaged.  The choice never sees the draws it is scored on, so
each score is an upper bound in expectation like any single proposal's, at ``S/2`` draws.  Its error ``nll_se`` is
half the root sum of squares of the two halves' delta-method errors, ``std_s(w_s) / (sqrt(S/2) mean_s(w_s))`` (which
understates the error of heavy-tailed weights).  ``nll_quarter`` repeats the cross-fit with the first quarter of
each half: the bias shrinks like ``1/S``, so ``nll_quarter - nll`` is a rough size of the bias left at ``S/2``.

**Checks that can fail** (``summarize_gaps``): the images where ``F*`` lies below ``-ln p(x)`` by more than twice
their combined error (the chosen proposal may be another than the locally optimised one, whose estimate lies below
``F*`` in expectation by Jensen's inequality, so the count is not zero by construction); the images where the two
fitted proposals' full-draw estimates disagree by more than twice their combined error (both estimate the same
``-ln p(x)``, so a disagreement is a bias of one of them); with the amortised proposal's excess over the kept
estimate, its effective sample size, and the count of images whose ``F*`` lies below the amortised estimate alone.

**The decoder's question** (``local_planar``: a planar flow length): how much a richer posterior than the model's own
gains on the model's fixed decoder.  ``q_0`` and a planar flow of that length, all of its
parameters fitted to each image alone (``local_planar_bound``, starting at the encoder's ``q_0`` and the identity
flow), on the same draws as ``F*``.  If it barely beats ``F*`` of the model's own family, the decoder has made its
posterior nearly as simple as that family.

Each analysis is a cached entry of its own (experiment ``gaps``), keyed by the analysed run's config and the
settings here, with the per-image numbers (``scores.pt``) and their means with paired standard errors
(``metrics.json``).  An analysis being made keeps a checkpoint beside the entry it will be (``analyse``), so an
interrupted one resumes where it stopped, to the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nf.experiments.data import BinarizedMNIST
from nf.experiments.mnist import full_config, mnist_config
from nf.experiments.trained import retrain_parameters, trained_model
from nf.models.dlgm import DLGM, log_mean_exp
from nf.models.local_bound import (
    AtStep,
    FitState,
    LocalBound,
    LocalFit,
    ResumeMismatch,
    fitted_log_weights,
    local_planar_bound,
    locally_optimised_bound,
)
from nf.runs.cache import Run, cached_run, config_hash, lookup
from nf.runs.checkpoint import Checkpointer, InterruptFlag, interrupt_between_updates
from nf.validation import check_int

GAP_IMAGES = 1000
GAP_NLL_SAMPLES = 5000
_NLL_BATCH = 10  # images per pass of the importance sampling
CHECKPOINT_SECONDS = 300.0  # an analysis saves its state at least this often (``analyse``)
_FIT_NAMES = {"local": "fit of F*", "planar": "decoder's planar fit"}  # the fits, in order, as progress names them


PROPOSALS = ("amortised", "local", "planar")  # the posteriors -ln p(x) is importance sampled with, in this order


def gap_config(
    run_config: dict[str, Any],
    images: int = GAP_IMAGES,
    nll_samples: int = GAP_NLL_SAMPLES,
    local_planar: int = 40,
    fit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings of one analysis of the MNIST run of ``run_config`` (module docstring), validated: the cache key
    of its entry.  ``fit``: ``LocalFit`` settings that differ from its defaults."""
    check_int("images", images)
    check_int("nll_samples", nll_samples, minimum=4)
    check_int("local_planar", local_planar)
    return {
        "run": mnist_config(**run_config),
        "images": images,
        "nll_samples": nll_samples,
        "local_planar": local_planar,
        "nll_proposals": list(PROPOSALS),
        "nll_choice": "cross-fitted halves",
        "fit": dataclasses.asdict(LocalFit(**(fit or {}))),
    }


def nll_estimates(log_w: torch.Tensor) -> dict[str, torch.Tensor]:
    """One proposal's estimates of ``-ln p(x) ~ -ln (1/S) sum_s w_s`` per image from log-weights ``log_w`` of shape
    ``(S, B)`` (float64): from all draws (``nll``, with its delta-method error ``nll_se``, ``std_s(w_s) /
    (sqrt(S) mean_s(w_s))``, and Kish's effective sample size ``ess``, ``(sum_s w_s)^2 / sum_s w_s^2``), from each
    half of them (``halves``, ``halves_se``: shape ``(2, B)``) and from each quarter (``quarters``: ``(4, B)``;
    ``S`` is cut to a multiple of 4)."""
    log_w = log_w.double()
    log_w = log_w[: len(log_w) - len(log_w) % 4]
    weights = (log_w - log_w.max(0).values).exp()
    halves, quarters = log_w.unflatten(0, (2, -1)), log_w.unflatten(0, (4, -1))
    half_weights = weights.unflatten(0, (2, -1))
    return {
        "nll": -log_mean_exp(log_w),
        "nll_se": _delta_se(weights, 0),
        "ess": weights.sum(0) ** 2 / (weights**2).sum(0),
        "halves": -log_mean_exp(halves, dim=1),
        "halves_se": _delta_se(half_weights, 1),
        "quarters": -log_mean_exp(quarters, dim=1),
    }


def _delta_se(weights: torch.Tensor, dim: int) -> torch.Tensor:
    return weights.std(dim) / (weights.mean(dim) * math.sqrt(weights.shape[dim]))


EstimateState = dict[str, Any]  # after a batch of images: the estimates so far and the draws' state
AtBatch = Callable[[Callable[[], EstimateState]], None]  # called after each batch with a function returning it
RandomState = tuple[Callable[[], torch.Tensor], Callable[[torch.Tensor], None]]  # the draws' state: get, set


@torch.no_grad()
def amortised_nll(
    model: DLGM,
    images: torch.Tensor,
    samples: int,
    resume: EstimateState | None = None,
    at_batch: AtBatch | None = None,
) -> dict[str, torch.Tensor]:
    """``nll_estimates`` with ``samples`` draws of the amortised ``q_K`` per image (the paper's estimator), made
    ``_NLL_BATCH`` images at a time from torch's global random draws; ``resume`` and ``at_batch`` as for
    ``_batched``."""
    batches = images.split(_NLL_BATCH)

    def batch(i: int) -> dict[str, torch.Tensor]:
        log_w = torch.cat([model.log_importance_weights(batches[i], 500) for _ in range(math.ceil(samples / 500))])
        return nll_estimates(log_w[:samples])

    return _batched(len(batches), batch, (torch.get_rng_state, torch.set_rng_state), resume, at_batch)


def fitted_nll(
    model: DLGM,
    fitted: LocalBound,
    images: torch.Tensor,
    samples: int,
    seed: int,
    resume: EstimateState | None = None,
    at_batch: AtBatch | None = None,
) -> dict[str, torch.Tensor]:
    """``nll_estimates`` with ``samples`` fresh draws per image of the posterior fitted to it (``fitted``), made
    ``_NLL_BATCH`` images at a time from a generator seeded with ``seed``; ``resume`` and ``at_batch`` as for
    ``_batched``."""
    generator = torch.Generator(device=fitted.parameters[0].device).manual_seed(seed)
    batches = torch.arange(len(images)).split(_NLL_BATCH)

    def batch(i: int) -> dict[str, torch.Tensor]:
        parameters = tuple(None if t is None else t[batches[i]] for t in fitted.parameters)
        log_w = fitted_log_weights(model.log_joint, fitted.flow, parameters, images[batches[i]], samples, generator)
        return nll_estimates(log_w)

    return _batched(len(batches), batch, (generator.get_state, generator.set_state), resume, at_batch)


def _batched(
    batches: int,
    batch: Callable[[int], dict[str, torch.Tensor]],
    draws: RandomState,
    resume: EstimateState | None,
    at_batch: AtBatch | None,
) -> dict[str, torch.Tensor]:
    """The estimates of ``batch(0), ..., batch(batches - 1)`` joined along the images.  After each batch
    ``at_batch`` is handed a function returning the estimate's state (the batches' estimates so far and the
    ``draws``' state); given that state as ``resume``, the estimate continues from the next batch to the same
    numbers as one that never stopped."""
    parts = []
    if resume is not None:
        parts = list(resume["parts"])
        draws[1](resume["draws"])
    while len(parts) < batches:
        parts.append(batch(len(parts)))
        if at_batch is not None:
            at_batch(lambda: {"parts": list(parts), "draws": draws[0]()})
    return _joined(parts)


def _joined(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-batch estimates joined along the images (the last dimension)."""
    return {key: torch.cat([p[key] for p in parts], dim=-1) for key in parts[0]}


def cross_fitted(parts: torch.Tensor, first: int, second: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-fitted choice (module docstring) from per-proposal estimates ``parts`` of shape ``(P, k, B)`` (``k``
    disjoint parts of the draws): per image, the proposal lowest on part ``first`` scored on part ``second`` and the
    one lowest on ``second`` scored on ``first``, averaged; returns the estimate ``(B,)`` and the two choices
    ``(2, B)`` (proposal indices)."""
    choices = torch.stack([parts[:, first].argmin(0), parts[:, second].argmin(0)])
    return 0.5 * (_chosen(parts, choices[0], second) + _chosen(parts, choices[1], first)), choices


def _chosen(parts: torch.Tensor, choice: torch.Tensor, part: int) -> torch.Tensor:
    """Per image, the estimate on part ``part`` of the proposal ``choice`` chose (``parts``: ``(P, k, B)``)."""
    return parts[choice, part, torch.arange(parts.shape[-1])]


def cross_fitted_nll(proposals: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The kept ``-ln p(x)`` per image from the proposals' ``nll_estimates`` (module docstring): ``nll`` cross-fitted
    on the two halves of the draws with its error ``nll_se``, ``nll_quarter`` cross-fitted on the first quarter of
    each half, ``nll_choice`` the proposals chosen (``(2, B)``, indices into ``proposals``' order); each proposal's
    full-draw estimate, error and effective sample size as ``nll_<proposal>``, ``nll_<proposal>_se``,
    ``ess_<proposal>``."""
    names = list(proposals)
    halves = torch.stack([proposals[n]["halves"] for n in names])
    halves_se = torch.stack([proposals[n]["halves_se"] for n in names])
    quarters = torch.stack([proposals[n]["quarters"] for n in names])
    nll, choices = cross_fitted(halves, 0, 1)
    se = 0.5 * torch.hypot(_chosen(halves_se, choices[0], 1), _chosen(halves_se, choices[1], 0))
    scores = {"nll": nll, "nll_se": se, "nll_quarter": cross_fitted(quarters, 0, 2)[0], "nll_choice": choices}
    for n in names:
        scores.update({f"nll_{n}": proposals[n]["nll"], f"nll_{n}_se": proposals[n]["nll_se"]})
        scores[f"ess_{n}"] = proposals[n]["ess"]
    return scores


def analyse(
    model: DLGM, images: torch.Tensor, config: dict[str, Any], checkpoint: Path | None = None
) -> tuple[dict[str, torch.Tensor], float]:
    """The per-image numbers of the module docstring for ``model`` on ``images``, by ``config`` (``gap_config``), and
    the seconds spent on them.

    With ``checkpoint``, the analysis is resumable: it saves its state there (with ``config``) every few minutes
    during either fit (``nf.models.local_bound``, "Resuming") and each proposal's estimate (``_batched``), and
    before and after each estimate; an interrupt (SIGINT) saves it at the next step of a fit or the next batch of
    images of an estimate, and stops.  Run again with the same ``config``, it continues from there to the same
    numbers, its seconds counting every process's time up to its last save (a checkpoint of another config is
    ignored and overwritten).  A second SIGINT stops at once.
    """
    fit = LocalFit(**config["fit"])
    torch.manual_seed(fit.seed)
    samples = config["nll_samples"]
    saved = _Resumable(checkpoint, config)
    with interrupt_between_updates() as interrupt:
        local = saved.fitted("local", lambda *a: locally_optimised_bound(model, images, fit, *a), interrupt)
        length = config["local_planar"]
        planar = saved.fitted("planar", lambda *a: local_planar_bound(model, images, length, fit, *a), interrupt)
        estimate = {
            "amortised": lambda *a: amortised_nll(model, images, samples, *a),
            "local": lambda *a: fitted_nll(model, local, images, samples, fit.seed + 3, *a),
            "planar": lambda *a: fitted_nll(model, planar, images, samples, fit.seed + 4, *a),
        }
        proposals = {name: saved.estimate(name, estimate[name], interrupt) for name in PROPOSALS}
    scores = {
        **cross_fitted_nll(proposals),
        "bound": local.start_bound.double(),
        "local_bound": local.bound.double(),
        "local_bound_se": local.bound_se.double(),
        "amortisation_se": local.gain_se.double(),
        "steps": local.steps,
        "converged": local.converged,
        "planar_bound": planar.bound.double(),
        "planar_bound_se": planar.bound_se.double(),
        "planar_steps": planar.steps,
        "planar_converged": planar.converged,
    }
    return scores, saved.seconds()


class _Resumable:
    """An analysis's state at ``path`` (none: nothing is saved) for ``config``: each fit's state, the proposals'
    estimates made, the state of the one being made, the seconds spent so far."""

    def __init__(self, path: Path | None, config: dict[str, Any]):
        self.checkpointer = None if path is None else Checkpointer(path, every_seconds=CHECKPOINT_SECONDS)
        self.config = config
        saved = (None if self.checkpointer is None else self.checkpointer.load()) or {}
        if saved.get("config") != config:
            saved = {}
        self.fits: dict[str, FitState | Callable[[], FitState]] = dict(saved.get("fits", {}))
        self.estimates: dict[str, dict[str, torch.Tensor]] = dict(saved.get("estimates", {}))
        self.partial: dict[str, EstimateState | Callable[[], EstimateState]] = dict(saved.get("partial", {}))
        self.earlier, self.start = saved.get("seconds", 0.0), time.perf_counter()
        self.estimating = False  # both fits are made, the estimates are being made

    def seconds(self) -> float:
        """The seconds spent: those of earlier processes (up to their last save) and this one's so far."""
        return self.earlier + time.perf_counter() - self.start

    def save(self) -> None:
        """Save the state, with a line saying how far it is (``python -m nf runs status`` shows it); without a
        checkpoint, nothing."""
        if self.checkpointer is None:
            return
        fits, partial = (
            {name: s() if callable(s) else s for name, s in kept.items()} for kept in (self.fits, self.partial)
        )
        if self.estimating:
            progress = f"{len(self.estimates)} of {len(PROPOSALS)} estimates of -ln p(x) made"
            for state in partial.values():
                made = sum(part["nll"].shape[-1] for part in state["parts"])
                progress += f", the next at image {made:,} of {self.config['images']:,}"
        else:
            name = list(fits)[-1]
            progress = f"{_FIT_NAMES[name]} at step {fits[name]['step']:,}"
        state = {"config": self.config, "fits": fits, "estimates": self.estimates, "partial": partial}
        self.checkpointer.save({**state, "seconds": self.seconds(), "progress": progress})

    def fitted(
        self, name: str, fit: Callable[[FitState | None, AtStep], LocalBound], interrupt: InterruptFlag
    ) -> LocalBound:
        """Fit ``name``, made by ``fit(resume, at_step)``: resumed from its saved state if there is one; its state
        noted after each step, saved when due, and the fit stopped at an interrupt."""
        try:
            return fit(self.fits.get(name), self._noting(self.fits, name, interrupt))
        except ResumeMismatch as error:
            raise ValueError(
                f"the checkpoint {self.checkpointer.path} does not fit this analysis ({error}); "
                "move or delete it to make the analysis from the start"
            ) from None

    def estimate(
        self,
        name: str,
        compute: Callable[[EstimateState | None, AtBatch], dict[str, torch.Tensor]],
        interrupt: InterruptFlag,
    ) -> dict[str, torch.Tensor]:
        """Proposal ``name``'s estimates: saved, or made now by ``compute(resume, at_batch)`` (saved before and
        after), resumed from its saved state if there is one, its state noted after each batch of images, saved
        when due, and the estimate stopped at an interrupt; then stop if interrupted."""
        self.estimating = True
        if name not in self.estimates:
            self.save()
            self.estimates[name] = compute(self.partial.get(name), self._noting(self.partial, name, interrupt))
            self.partial.pop(name, None)
            self.save()
        interrupt.check(self.save)
        return self.estimates[name]

    def _noting(self, kept: dict[str, Any], name: str, interrupt: InterruptFlag) -> Callable[[Any], None]:
        """The callback a fit or an estimate hands its state to (a function returning it): noted as ``kept[name]``,
        saved when due, and the work stopped (saved) at an interrupt."""

        def note(state: Any) -> None:
            kept[name] = state
            if self.checkpointer is not None and self.checkpointer.due(0):
                self.save()
            interrupt.check(self.save)

        return note


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    """The mean over the images and its standard error."""
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


def summarize_gaps(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """Means over the images with standard errors: the three estimates, the three gaps (each paired, per image), the
    planar bound fitted to the decoder and its gain over ``F*``, the estimate's remaining bias and how far the
    amortised proposal's estimate lies above it; the share of images converged, how often each proposal was chosen
    (of the two choices per image) and each proposal's median effective sample size; and the checks of the module
    docstring, as counts of images."""
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
        ("planar_bound", scores["planar_bound"]),
        ("planar_gain", scores["local_bound"] - scores["planar_bound"]),
        ("nll_bias", scores["nll_quarter"] - scores["nll"]),
        ("nll_amortised_excess", scores["nll_amortised"] - scores["nll"]),
        ("proposal_difference", scores["nll_local"] - scores["nll_planar"]),
    ]:
        summary[name], summary[f"{name}_se"] = mean_se(values)
    summary["converged"] = scores["converged"].double().mean().item()
    summary["planar_converged"] = scores["planar_converged"].double().mean().item()
    summary["max_steps"] = int(scores["steps"].max())
    for index, name in enumerate(PROPOSALS):
        summary[f"chosen_{name}"] = (scores["nll_choice"] == index).double().mean().item()
        summary[f"ess_{name}"] = scores[f"ess_{name}"].median().item()
    below = scores["nll"] - scores["local_bound"] > 2 * torch.hypot(scores["local_bound_se"], scores["nll_se"])
    summary["below_nll"] = int(below.sum())
    below_amortised = scores["nll_amortised"] - scores["local_bound"] > 2 * scores["local_bound_se"]
    summary["below_amortised_nll"] = int(below_amortised.sum())  # the check with the amortised estimate alone
    apart = (scores["nll_local"] - scores["nll_planar"]).abs()
    disagree = apart > 2 * torch.hypot(scores["nll_local_se"], scores["nll_planar_se"])
    summary["proposals_disagree"] = int(disagree.sum())
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
        scores, seconds = analyse(model, images, config, checkpoint)
        torch.save(scores, folder / "scores.pt")
        summary = {**summarize_gaps(scores), "seconds": seconds}
        (folder / "metrics.json").write_text(json.dumps(summary, indent=1))

    return cached_run("gaps", config, write, results_dir)
