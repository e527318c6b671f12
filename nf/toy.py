"""Fitting a flow to an unnormalised 2-D density ``exp(-U(z))`` (paper section 6.1).

The flow ``q_K`` is a diagonal Gaussian ``q_0`` (learned mean and scale)
pushed through ``K`` layers.  Training minimises the annealed free energy

    F_beta(q) = E_{q_0}[ ln q_0(z_0) - sum_k ln|det df_k/dz_{k-1}| + beta_t U(z_K) ],

with ``beta_t = min(1, 0.01 + t / anneal_updates)`` (the paper uses
``anneal_updates = 10000``).  At ``beta = 1``, ``F = KL(q_K || p) - ln Z``, so
it bounds ``-ln Z`` from above.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .cache import Run, cached_run
from .distributions import DiagonalGaussian
from .energies import target_energy
from .flows import FLOW_FAMILIES, FlowSequence, make_flow

OPTIMIZERS = ("adam", "rmsprop")

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
    unknown = set(overrides) - set(DEFAULT_TOY_CONFIG)
    if unknown:
        raise ValueError(f"unknown toy config keys {sorted(unknown)}; allowed: {', '.join(DEFAULT_TOY_CONFIG)}")
    config = {**DEFAULT_TOY_CONFIG, **overrides}
    target_energy(config["energy"])
    if config["family"] not in FLOW_FAMILIES:
        raise ValueError(f"unknown flow family {config['family']!r}; choose one of {', '.join(FLOW_FAMILIES)}")
    if config["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config['optimizer']!r}; choose one of {', '.join(OPTIMIZERS)}")
    for key in ("length", "updates", "anneal_updates", "batch_size", "eval_samples"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if config["anneal_updates"] >= config["updates"]:
        raise ValueError(
            f"anneal_updates={config['anneal_updates']} must be smaller than updates={config['updates']}, "
            "or the free energy never reaches beta = 1"
        )
    return config


def inverse_temperature(step: int, anneal_updates: int) -> float:
    """``beta_t = min(1, 0.01 + t / anneal_updates)`` (paper section 6.1)."""
    return min(1.0, 0.01 + step / anneal_updates)


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


def free_energy_terms(model: ToyFlow, energy_name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample ``ln q_K(z_K) + U(z_K)``; its mean is the free energy at ``beta = 1``."""
    zk, log_q = model.sample(n, generator)
    return log_q + target_energy(energy_name)(zk)


def train_toy(config: dict[str, Any], folder: Path) -> None:
    """Train one toy flow and write ``metrics.json`` and ``model.pt`` into ``folder``."""
    torch.manual_seed(config["seed"])
    model = ToyFlow(config["family"], config["length"], seed=config["seed"])
    energy = target_energy(config["energy"])
    if config["optimizer"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    else:
        optimizer = torch.optim.RMSprop(model.parameters(), lr=config["learning_rate"], momentum=config["momentum"])
    history = []
    start = time.perf_counter()
    for step in range(config["updates"]):
        beta = inverse_temperature(step, config["anneal_updates"])
        zk, log_q = model.sample(config["batch_size"])
        loss = (log_q + beta * energy(zk)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"toy run diverged at update {step}: loss {loss.item()}")
        if step % 100 == 0 or step == config["updates"] - 1:
            history.append([step, beta, loss.item()])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        terms = free_energy_terms(model, config["energy"], config["eval_samples"], torch.Generator().manual_seed(12345))
    metrics = {
        "free_energy": terms.mean().item(),
        "free_energy_se": (terms.std() / math.sqrt(len(terms))).item(),
        "seconds_per_1000_updates": 1000 * seconds / config["updates"],
        "history": history,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    torch.save(model.state_dict(), folder / "model.pt")


def fit_toy(results_dir: str | Path | None = None, **overrides: Any) -> Run:
    """The cached toy run for ``toy_config(**overrides)``, trained if not cached yet."""
    return cached_run("toy", toy_config(**overrides), train_toy, results_dir)


def load_toy_model(run: Run) -> ToyFlow:
    """Rebuild the trained ``ToyFlow`` of a toy run."""
    model = ToyFlow(run.config["family"], run.config["length"], seed=run.config["seed"])
    model.load_state_dict(run.load_tensors("model.pt"))
    return model.eval()
