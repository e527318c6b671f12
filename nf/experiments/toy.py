"""Fitting a flow to an unnormalised 2-D density ``exp(-U(z))`` (paper section 6.1).

The flow ``q_K`` is a diagonal Gaussian ``q_0`` (learned mean and scale)
pushed through ``K`` layers.  Training minimises the annealed free energy

    F_beta(q) = E_{q_0}[ ln q_0(z_0) - sum_k ln|det df_k/dz_{k-1}| + beta_t U(z_K) ],

with ``beta_t = min(1, 0.01 + t / anneal_updates)`` (the paper uses
``anneal_updates = 10000``).  At ``beta = 1``, ``F = KL(q_K || p) - ln Z``, so
it bounds ``-ln Z`` from above; with ``ln Z`` from quadrature
(``nf.models.quadrature``) the KL divergence itself is reported, exact up to
Monte-Carlo error (its standard error is the free energy's).

The targets are ``nf.models.energies.target_energy``: U1 as published, U2-U4
restricted (smoothly) to the window the paper plots, since as published they
are not normalisable.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nf.experiments.training import checked_step, inverse_temperature, make_optimizer, resume, training_state
from nf.flows import FLOW_FAMILIES, FlowSequence, make_flow
from nf.models.density import flow_log_density
from nf.models.distributions import DiagonalGaussian
from nf.models.energies import target_energy
from nf.models.quadrature import log_normalizer
from nf.runs.cache import Run, cached_run, cached_runs
from nf.runs.checkpoint import Checkpointer, interrupt_between_updates
from nf.runs.config import check_training, merge_defaults
from nf.validation import check_choice, check_int

DEFAULT_TOY_CONFIG: dict[str, Any] = {
    "energy": "U1",
    "family": "planar",
    "length": 8,
    "updates": 5000,
    "anneal_updates": 2000,
    "batch_size": 256,
    "optimizer": "adam",
    "learning_rate": 1e-2,
    "momentum": 0.9,
    "eval_samples": 20000,
    "seed": 0,
}


def toy_config(**overrides: Any) -> dict[str, Any]:
    """A complete toy-run config: the defaults above with ``overrides``, validated."""
    config = merge_defaults("toy", DEFAULT_TOY_CONFIG, overrides)
    target_energy(config["energy"])
    check_choice("flow family", config["family"], FLOW_FAMILIES)
    check_training(config, ("length", "updates", "anneal_updates", "batch_size", "eval_samples"))
    return config


class ToyFlow(nn.Module):
    """``q_K``: a learned diagonal Gaussian ``q_0`` followed by a flow on ``R^2``."""

    def __init__(self, family: str, length: int, seed: int = 0):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(2))
        self.log_scale = nn.Parameter(torch.zeros(2))
        self.flow: FlowSequence = make_flow(family, 2, length, seed=seed)

    def base(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.loc, self.log_scale)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``z_K`` and its ``ln q_K(z_K)`` (paper eq. 7)."""
        base = self.base()
        z0 = base.rsample((n,), generator=generator)
        zk, log_det = self.flow(z0)
        return zk, base.log_prob(z0) - log_det

    def log_prob(self, y: Tensor) -> Tensor:
        """Exact ``ln q_K(y)``: invert the flow to ``z_0 = f^{-1}(y)``, then eq. 7 along the path."""
        return flow_log_density(self.flow, self.base(), y)


def free_energy_terms(model: ToyFlow, energy_name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample ``ln q_K(z_K) + U(z_K)``; its mean is the free energy at ``beta = 1``."""
    zk, log_q = model.sample(n, generator)
    return log_q + target_energy(energy_name)(zk)


def train_toy(
    config: dict[str, Any], folder: Path, checkpoint: Path | None = None, checkpoint_every: int | None = None
) -> None:
    """Train one toy flow and write ``metrics.json`` and ``model.pt`` into ``folder``.

    Always in float32, whatever the caller's default dtype, so a run gives
    the same numbers in any process.  With ``checkpoint``, the state is saved
    there every ``checkpoint_every`` updates (default: every two minutes) and
    a later call resumes from it, ending with the same numbers as a run that
    was never interrupted.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (the last good
            checkpoint is kept).
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        _train_toy(config, folder, None if checkpoint is None else Checkpointer(checkpoint, checkpoint_every))
    finally:
        torch.set_default_dtype(previous)


def _train_toy(config: dict[str, Any], folder: Path, checkpointer: Checkpointer | None) -> None:
    torch.manual_seed(config["seed"])
    model = ToyFlow(config["family"], config["length"], seed=config["seed"])
    energy = target_energy(config["energy"])
    optimizer = make_optimizer([{"params": list(model.parameters()), "scale": 1.0}], config)
    history: list[list[float]] = []
    first_step, elapsed = 0, 0.0
    state = resume(checkpointer, config, model, optimizer)
    if state is not None:
        first_step, elapsed, history = state["step"], state["elapsed"], state["history"]
    last_finite = (first_step - 1, history[-1][2] if history else float("nan"))
    start = time.perf_counter()
    with interrupt_between_updates() as interrupt:
        step = first_step

        def save() -> None:  # the state after ``step`` updates
            seconds = elapsed + time.perf_counter() - start
            checkpointer.save(training_state(config, step, model, optimizer, history, seconds))

        for step in range(first_step, config["updates"]):
            interrupt.check(save if checkpointer is not None and step > first_step else None)
            if checkpointer is not None and step > first_step and checkpointer.due(step):
                save()
            beta = inverse_temperature(step, config["anneal_updates"])
            zk, log_q = model.sample(config["batch_size"])
            loss = (log_q + beta * energy(zk)).mean()
            run = f"toy run {config['energy']} {config['family']} K={config['length']} seed {config['seed']}"
            value = checked_step(loss, optimizer, step, last_finite, run, checkpointer)
            last_finite = (step, value)
            if step % 100 == 0 or step == config["updates"] - 1:
                history.append([step, beta, value])
    seconds = elapsed + time.perf_counter() - start
    with torch.no_grad():
        terms = free_energy_terms(model, config["energy"], config["eval_samples"], torch.Generator().manual_seed(12345))
    free_energy = terms.mean().item()
    log_z = log_normalizer(target_energy(config["energy"]))
    metrics = {
        "free_energy": free_energy,
        "free_energy_se": (terms.std() / math.sqrt(len(terms))).item(),
        "log_normalizer": log_z,
        "kl": free_energy + log_z,
        "seconds_per_1000_updates": 1000 * seconds / config["updates"],
        "history": history,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    torch.save(model.state_dict(), folder / "model.pt")


def fit_toy(results_dir: str | Path | None = None, checkpoint_every: int | None = None, **overrides: Any) -> Run:
    """The cached toy run for ``toy_config(**overrides)``, trained (or resumed) if not cached yet."""
    train = partial(train_toy, checkpoint_every=checkpoint_every)
    return cached_run("toy", toy_config(**overrides), train, results_dir)


def load_toy_model(run: Run) -> ToyFlow:
    """Rebuild the trained ``ToyFlow`` of a toy run."""
    model = ToyFlow(run.config["family"], run.config["length"], seed=run.config["seed"])
    model.load_state_dict(run.load_tensors("model.pt"))
    return model.eval()


def fit_toys(
    configs: list[dict[str, Any]], results_dir: str | Path | None = None, workers: int = 2, train: bool = True
) -> list[Run | None]:
    """The cached runs of many toy configs (from ``toy_config``), training the missing ones in ``workers`` processes.

    With ``train=False`` nothing is trained and a missing run is ``None``.
    Returns the runs in the order of ``configs``.
    """
    check_int("workers", workers)
    return cached_runs("toy", [toy_config(**c) for c in configs], train_toy if train else None, results_dir, workers)


def run_configs(
    energies: list[str], families: list[str], lengths: list[int], seeds: list[int], **common: Any
) -> list[dict[str, Any]]:
    """Configs for every (energy, family, length, seed) combination, sharing ``common`` settings."""
    return [
        toy_config(energy=e, family=f, length=k, seed=s, **common)
        for e in energies
        for f in families
        for k in lengths
        for s in seeds
    ]
