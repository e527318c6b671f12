"""Training and scoring the MNIST DLGM with amortised flows (paper section 6.2, Table 2, Fig. 4).

Training minimises the annealed free energy of eq. 20 on dynamically
binarised MNIST, ``beta_t = min(1, 0.01 + t / anneal_updates)``, with
mini-batches drawn epoch by epoch.  With ``clip_grad_norm > 0`` the
gradient's norm is clipped to it: with Adam at the ``report`` profile's
learning rate, rare gradient spikes from the amortised flows otherwise throw
the posterior into a broad, high-entropy region from which training does not
recover.  Every ``eval_every`` updates the bound on
a fixed held-out set (the first 1,000 test images, fixed binarisation) is
logged beside the training bound.  The state is checkpointed so an
interrupted run resumes to the same numbers.

Scoring uses the whole test set binarised once with ``test_seed`` (the same
binary images for every model) and ``S = eval_samples`` posterior samples per
image, drawn once and used for both estimates:

    F(x)      = mean_s [ ln q_K(z_s|x) - ln p(x, z_s) ]                 (the bound, eq. 20 at beta = 1)
    -ln p(x) ~ -ln (1/S) sum_s p(x, z_s) / q_K(z_s|x)                  (importance sampling)
    KL(q_K(z|x) || p(z|x)) = F(x) + ln p(x)                             (Fig. 4b)

each reported as a test-set mean with its standard error.
"""

from __future__ import annotations

import json
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .cache import Run, cached_run, code_version, lookup
from .checkpoint import Checkpointer, checked_step, interrupt_between_updates
from .config import check_choice, check_int, check_training, merge_defaults
from .data import BinarizedMNIST
from .devices import resolve_device
from .dlgm import DLGM, DLGM_FLOWS
from .parallel import run_tasks
from .toy import inverse_temperature

HELD_OUT = 1000

DEFAULT_MNIST_CONFIG: dict[str, Any] = {
    "flow": "planar",
    "length": 10,
    "updates": 20_000,
    "anneal_updates": 10_000,
    "batch_size": 100,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "momentum": 0.9,
    "clip_grad_norm": 100.0,
    "eval_every": 1000,
    "eval_samples": 200,
    "test_seed": 0,
    "seed": 0,
}


def mnist_config(**overrides: Any) -> dict[str, Any]:
    """A complete MNIST-run config: the defaults above with ``overrides``, validated."""
    config = merge_defaults("MNIST", DEFAULT_MNIST_CONFIG, overrides)
    check_choice("DLGM flow", config["flow"], DLGM_FLOWS)
    check_int("length", config["length"], minimum=0)
    check_training(config, ("updates", "anneal_updates", "batch_size", "eval_every", "eval_samples"))
    return config


def _optimizer(model: DLGM, config: dict[str, Any]) -> torch.optim.Optimizer:
    if config["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    return torch.optim.RMSprop(model.parameters(), lr=config["learning_rate"], momentum=config["momentum"])


@torch.no_grad()
def score(model: DLGM, images: torch.Tensor, samples: int, batch_size: int = 100) -> dict[str, float]:
    """Test-set bound, ``-ln p(x)`` and KL with standard errors (module docstring)."""
    bounds, nlls = [], []
    for x in images.split(batch_size):
        _, zk, log_q = model.sample_posterior(x, samples)
        log_w = model.log_joint(x, zk) - log_q  # (S, batch)
        bounds.append(-log_w.mean(0))
        nlls.append(-(torch.logsumexp(log_w, dim=0) - math.log(samples)))
    bound, nll = torch.cat(bounds).double(), torch.cat(nlls).double()
    kl = bound - nll
    n = math.sqrt(len(bound))
    return {
        "test_bound": bound.mean().item(), "test_bound_se": (bound.std() / n).item(),
        "test_nll": nll.mean().item(), "test_nll_se": (nll.std() / n).item(),
        "test_kl": kl.mean().item(), "test_kl_se": (kl.std() / n).item(),
    }


def train_mnist(
    config: dict[str, Any], folder: Path, checkpoint: Path | None = None, device: str = "cpu",
    data_root: str | None = None, checkpoint_seconds: float = 180.0, checkpoint_every: int | None = None,
) -> None:
    """Train one DLGM and write ``metrics.json`` and ``images.pt`` (samples, reconstructions) into ``folder``."""
    device_ = resolve_device(device)
    train = BinarizedMNIST("train", "dynamic", root=data_root)
    test = BinarizedMNIST("test", "fixed", seed=config["test_seed"], root=data_root)
    train_pixels = train.pixels.to(device_)
    test_images = test.images().to(device_)
    held_out = test_images[:HELD_OUT]

    torch.manual_seed(config["seed"])
    model = DLGM(config["flow"], config["length"]).to(device_)
    optimizer = _optimizer(model, config)
    checkpointer = None if checkpoint is None else Checkpointer(checkpoint, checkpoint_every, checkpoint_seconds)
    step, elapsed, history, order, position = 0, 0.0, [], torch.randperm(len(train_pixels)), 0
    state = checkpointer.load() if checkpointer is not None else None
    if state is not None and state.get("config") == config:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step, elapsed, history, order, position = (state[k] for k in ("step", "elapsed", "history", "order", "position"))
    running, last_finite = [], (step - 1, float("nan"))
    progress = tqdm(total=config["updates"], initial=step, desc=f"{config['flow']} K={config['length']}",
                    unit="update", disable=not sys.stderr.isatty())  # a bar in a terminal, silence in a notebook
    start = time.perf_counter()
    with interrupt_between_updates() as interrupt:
        while step < config["updates"]:
            interrupt.check()
            if checkpointer is not None and checkpointer.due(step) and running == []:
                checkpointer.save({
                    "config": config, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if device_.type == "cuda" else None,
                    "history": history, "order": order, "position": position,
                    "elapsed": elapsed + time.perf_counter() - start,
                })
            if position + config["batch_size"] > len(order):
                order, position = torch.randperm(len(train_pixels)), 0
            x = torch.bernoulli(train_pixels[order[position : position + config["batch_size"]].to(device_)])
            position += config["batch_size"]
            beta = inverse_temperature(step, config["anneal_updates"])
            loss = model.free_energy(x, beta).mean()
            run = f"MNIST run {config['flow']} K={config['length']}"
            value = checked_step(loss, optimizer, step, last_finite, run, checkpointer, config["clip_grad_norm"])
            last_finite = (step, value)
            running.append(value)
            step += 1
            progress.update()
            if step % config["eval_every"] == 0 or step == config["updates"]:
                with torch.no_grad():
                    held_out_bound = model.free_energy(held_out).mean().item()
                history.append([step, beta, sum(running) / len(running), held_out_bound])
                running = []
    progress.close()
    seconds = elapsed + time.perf_counter() - start
    model.eval()
    metrics = {**score(model, test_images, config["eval_samples"]), "seconds_per_update": seconds / config["updates"],
               "history": history, "parameters": sum(p.numel() for p in model.parameters())}
    with torch.no_grad():
        generator = torch.Generator(device=device_).manual_seed(1)
        prior_samples = torch.sigmoid(model.decoder(torch.randn(64, model.latent, generator=generator, device=device_)))
        originals = test_images[:16]
        _, zk, _ = model.sample_posterior(originals)
        reconstructions = torch.sigmoid(model.decoder(zk))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    images = {"samples": prior_samples, "originals": originals, "reconstructions": reconstructions}
    torch.save({k: (v.cpu() * 255).round().to(torch.uint8) for k, v in images.items()}, folder / "images.pt")


def fit_mnist(results_dir: str | Path | None = None, device: str = "cpu", data_root: str | None = None,
              version: str | None = None, **overrides: Any) -> Run:
    """The cached MNIST run for ``mnist_config(**overrides)``, trained (or resumed) if not cached yet.

    ``device`` and ``data_root`` say where to compute and read data; they are
    not part of the config, so a run made on a GPU is found on a CPU.
    ``version``: the code version to record (default: read when training starts).
    """
    train = partial(train_mnist, device=device, data_root=data_root)
    return cached_run("mnist", mnist_config(**overrides), train, results_dir, version)


def fit_mnist_runs(configs: list[dict[str, Any]], results_dir: str | Path | None = None, device: str = "cpu",
                   data_root: str | None = None, workers: int = 1) -> list[Run]:
    """The cached runs of several MNIST configs, training the missing ones in ``workers`` processes.

    The code version is read once, before the first run trains.  Returns the
    runs in the order of ``configs``.
    """
    check_int("workers", workers, minimum=1)
    configs = [mnist_config(**c) for c in configs]
    version = code_version()
    if workers > 1:
        folder = None if results_dir is None else str(results_dir)
        run_tasks([partial(fit_mnist, folder, device, data_root, version, **c)
                   for c in configs if lookup("mnist", c, results_dir) is None], workers)
    return [fit_mnist(results_dir, device, data_root, version, **config) for config in configs]


TRAINING_KEYS = ("updates", "anneal_updates", "batch_size", "optimizer", "learning_rate", "clip_grad_norm",
                 "eval_every", "eval_samples", "test_seed")


def profile_mnist_configs(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The MNIST configs that a chapter with these ``parameters`` (see ``nf.book.profiles``) asks for."""
    return run_configs(parameters["models"], seed=parameters.get("seed", 0), **{k: parameters[k] for k in TRAINING_KEYS})


def run_configs(models: list[list], **common: Any) -> list[dict[str, Any]]:
    """Configs for a list of ``[flow, length]`` models sharing ``common`` settings."""
    return [mnist_config(flow=flow, length=length, **common) for flow, length in models]
