"""Training and scoring the MNIST DLGM with amortised flows (paper section 6.2, Table 2, Fig. 4).

Training minimises the annealed free energy of eq. 20 on dynamically
binarised MNIST, ``beta_t = min(1, 0.01 + t / anneal_updates)``, with
mini-batches drawn epoch by epoch.  With ``clip_grad_norm > 0`` the
gradient's norm is clipped to it: with Adam, rare gradient spikes from the
amortised flows otherwise throw the posterior into a broad, high-entropy
region from which training does not recover.  The learning rate is constant,
or, with ``final_learning_rate``, decays exponentially from
``learning_rate`` to ``final_learning_rate`` over the run; the flow (its
amortisation head and its own networks) may take ``flow_lr_scale`` times the
learning rate, and may start at the identity map (``flow_start``;
``nf.models.flow_start``).  The state is checkpointed so an interrupted run resumes to
the same numbers; an interrupt (SIGINT) saves it at the update boundary where the run stops.

**Budget points.**  With a constant learning rate the first ``b`` updates of
a run *are* the run of ``b`` updates (the annealing depends on
``anneal_updates`` only), so a long run stores, on its way, the run of every
multiple of ``BUDGET_EVERY`` updates (``budget_points``) in the run cache,
scored exactly as that shorter run would be: one run of the paper's 500,000
updates gives its budget curve at 100,000, 200,000, ... updates, each point a
cached run of its own that lands while the long run goes on.  Runs of at
least ``KEEP_PARAMETERS_FROM`` updates, too costly to retrain for a later
analysis, also store their trained parameters (``parameters.pt``;
``nf.experiments.trained`` loads them, and retrains shorter runs to get theirs).

Protocols (``PROTOCOLS``; which images train, which are watched, which score):

* ``validation``: trains on the first 50,000 training images; every
  ``eval_every`` updates the bound and ``-ln p(x)`` on the first 1,000
  validation images (the last 10,000 training images) are logged; the final
  scores are on all 10,000 validation images.  Recipe choices and learning
  curves come from these runs; they never see the test set.
* ``test``: trains on all 60,000 training images, logs only the training
  bound, and is scored once on the 10,000 test images.
* ``quick``: the short runs of the book's first version: trains on all 60,000 images, logs
  the bound on the first 1,000 test images for plots, scored on the test set.

Scoring binarises the scored images once with ``test_seed`` (a fixed
Bernoulli draw of the grey levels, the same binary images for every model;
not the standard fixed-binarised MNIST file) and uses ``S = eval_samples``
posterior samples per image, drawn once and used for both estimates:

    F(x)      = mean_s [ ln q_K(z_s|x) - ln p(x, z_s) ]                 (the bound, eq. 20 at beta = 1)
    -ln p(x) ~ -ln (1/S) sum_s p(x, z_s) / q_K(z_s|x)                  (importance sampling)
    KL(q_K(z|x) || p(z|x)) = F(x) + ln p(x)                             (Fig. 4b)

each reported as a mean with its standard error; the per-image values are
stored too (``scores.pt``), so any two runs scored on the same images can be
compared pairwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from nf.experiments.data import BinarizedMNIST
from nf.experiments.training import checked_step, inverse_temperature, make_optimizer, resume, training_state
from nf.models.dlgm import DLGM, DLGM_FLOWS, log_mean_exp
from nf.models.flow_start import check_flow_start
from nf.runs.cache import Run, cached_run, cached_runs, code_version, lookup, store_run
from nf.runs.checkpoint import Checkpointer, interrupt_between_updates
from nf.runs.config import check_training, merge_defaults
from nf.runs.devices import resolve_device
from nf.validation import check_choice, check_int, check_positive

HELD_OUT = 1000
VALIDATION = 10_000  # the last training images, held out by the validation protocol
PROTOCOLS = ("validation", "test", "quick")
BUDGET_EVERY = 100_000  # a run with a constant learning rate stores the run of every multiple of this many updates
KEEP_PARAMETERS_FROM = 500_000  # runs of at least this many updates store their trained parameters

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
    "protocol": "quick",
    "final_learning_rate": None,
    "flow_lr_scale": 1.0,
    "flow_start": "random",
}

# Keys added after the first runs were cached: left out of a config while they have these values (the behaviour
# before they existed), so the configs, and the cache keys, of the earlier runs do not change.
LATER_KEYS: dict[str, Any] = {
    "protocol": "quick",
    "final_learning_rate": None,
    "flow_lr_scale": 1.0,
    "flow_start": "random",
}


def mnist_config(**overrides: Any) -> dict[str, Any]:
    """A complete MNIST-run config: the defaults above with ``overrides``, validated."""
    config = merge_defaults("MNIST", DEFAULT_MNIST_CONFIG, overrides)
    check_choice("DLGM flow", config["flow"], DLGM_FLOWS)
    check_int("length", config["length"], minimum=0)
    check_training(config, ("updates", "anneal_updates", "batch_size", "eval_every", "eval_samples"))
    check_choice("protocol", config["protocol"], PROTOCOLS)
    for key in ("learning_rate", "final_learning_rate", "flow_lr_scale"):
        if not (config[key] is None and key == "final_learning_rate"):
            check_positive(key, config[key])
    if config["length"] == 0 or config["flow"] == "none":
        config["flow_lr_scale"] = 1.0  # no flow: the same run whatever its flow's step and start
        config["flow_start"] = "random"
    check_flow_start(config["flow"], config["flow_start"])
    return {k: v for k, v in config.items() if k not in LATER_KEYS or v != LATER_KEYS[k]}


def full_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the keys that ``mnist_config`` leaves out at their default values put back."""
    return {**DEFAULT_MNIST_CONFIG, **config}


def learning_rate_at(config: dict[str, Any], step: int) -> float:
    """The learning rate of update ``step``: constant, or ``lr_0 (lr_final / lr_0)^(step / updates)``."""
    config = full_config(config)
    start, final = config["learning_rate"], config["final_learning_rate"]
    return start if final is None else start * (final / start) ** (step / config["updates"])


def budget_points(config: dict[str, Any]) -> list[int]:
    """The budgets below ``config["updates"]`` whose runs a run of ``config`` stores on its way (module docstring):
    every multiple of ``BUDGET_EVERY`` after the annealing ends, if the learning rate is constant and the rows of
    the history fall on those multiples (``eval_every`` divides ``BUDGET_EVERY``: a budget point's history is the
    shorter run's)."""
    config = full_config(config)
    if config["final_learning_rate"] is not None or BUDGET_EVERY % config["eval_every"]:
        return []
    return [b for b in range(BUDGET_EVERY, config["updates"], BUDGET_EVERY) if b > config["anneal_updates"]]


def budget_config(config: dict[str, Any], updates: int) -> dict[str, Any]:
    """The config of the run of ``updates`` updates that a longer constant-rate run of ``config`` passes through."""
    if updates not in budget_points(config):
        raise ValueError(f"{updates} updates is not a budget point of this run (its points: {budget_points(config)})")
    return mnist_config(**{**config, "updates": updates})


def mnist_optimizer(model: DLGM, config: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimiser, with the flow's parameters in a second group stepped at ``flow_lr_scale`` times the rate."""
    flow = {id(p) for p in model.flow_parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in flow], "scale": 1.0}]
    if flow:
        groups.append({"params": model.flow_parameters(), "scale": config["flow_lr_scale"]})
    return make_optimizer(groups, config)


@torch.no_grad()
def score_images(model: DLGM, images: torch.Tensor, samples: int, batch_size: int = 100) -> dict[str, torch.Tensor]:
    """Per-image bound ``F(x)`` and ``-ln p(x)`` (module docstring), in float64.

    Also ``nll_half``: ``-ln p(x)`` from the first ``S/2`` of the same samples.  The estimate's bias
    (``E[-ln p_hat] >= -ln p``, by Jensen's inequality) shrinks like ``1/S``, so the mean of
    ``nll_half - nll`` estimates the bias that remains at ``S``.
    """
    bounds, nlls, halves = [], [], []
    for x in images.split(batch_size):
        log_w = model.log_importance_weights(x, samples)  # (S, batch)
        bounds.append(-log_w.mean(0))
        nlls.append(-log_mean_exp(log_w))
        halves.append(-log_mean_exp(log_w[: max(samples // 2, 1)]))
    return {
        "bound": torch.cat(bounds).double(),
        "nll": torch.cat(nlls).double(),
        "nll_half": torch.cat(halves).double(),
    }


def summarize_scores(scores: dict[str, torch.Tensor], prefix: str = "test") -> dict[str, float]:
    """Means and standard errors of the bound, ``-ln p(x)`` and ``KL = F + ln p`` over the scored images."""
    bound, nll = scores["bound"], scores["nll"]
    n = math.sqrt(len(bound))
    summary = {}
    for name, values in (("bound", bound), ("nll", nll), ("kl", bound - nll)):
        summary[f"{prefix}_{name}"] = values.mean().item()
        summary[f"{prefix}_{name}_se"] = (values.std() / n).item()
    return summary


def _protocol_data(
    protocol: str, test_seed: int, data_root: str | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Grey-level training pixels, the watched held-out images (or None) and the scored images of a protocol."""
    if protocol == "validation":
        pixels = BinarizedMNIST("train", "dynamic", root=data_root).pixels
        validation = torch.bernoulli(pixels[-VALIDATION:], generator=torch.Generator().manual_seed(test_seed))
        return pixels[:-VALIDATION], validation[:HELD_OUT], validation
    train = BinarizedMNIST("train", "dynamic", root=data_root).pixels
    test = BinarizedMNIST("test", "fixed", seed=test_seed, root=data_root).images()
    return train, test[:HELD_OUT] if protocol == "quick" else None, test


def train_mnist(
    config: dict[str, Any],
    folder: Path,
    checkpoint: Path | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    checkpoint_seconds: float = 180.0,
    checkpoint_every: int | None = None,
    results_dir: str | Path | None = None,
    keep_parameters: bool = False,
) -> None:
    """Train one DLGM and write ``metrics.json``, ``scores.pt`` (per-image scores) and ``images.pt`` into ``folder``,
    and ``parameters.pt`` for a run of at least ``KEEP_PARAMETERS_FROM`` updates or with ``keep_parameters``.

    ``history`` rows are ``[update, beta, mean training F since the last row]``, followed by the held-out bound
    (``quick`` and ``validation`` protocols) and the held-out ``-ln p(x)`` (``validation``).  The runs of its
    ``budget_points`` are stored in the cache at ``results_dir`` (default: ``nf.runs.cache.results_root``) as
    the run passes them.
    """
    protocol = full_config(config)["protocol"]
    device_ = resolve_device(device)
    train_pixels, held_out, scored = (
        t.to(device_) if t is not None else None for t in _protocol_data(protocol, config["test_seed"], data_root)
    )

    torch.manual_seed(config["seed"])
    model = DLGM(config["flow"], config["length"], flow_start=full_config(config)["flow_start"]).to(device_)
    optimizer = mnist_optimizer(model, full_config(config))
    checkpointer = None if checkpoint is None else Checkpointer(checkpoint, checkpoint_every, checkpoint_seconds)
    step, elapsed, history, order, position = 0, 0.0, [], torch.randperm(len(train_pixels)), 0
    running: list[float] = []
    state = resume(checkpointer, config, model, optimizer)
    if state is not None:
        step, elapsed, history, order, position = (
            state[k] for k in ("step", "elapsed", "history", "order", "position")
        )
        running = state.get("running", [])
    budgets = [b for b in budget_points(config) if b > step]
    version = code_version() if budgets else None  # the code that trains, recorded with each budget point
    last_finite = (step - 1, float("nan"))
    progress = tqdm(
        total=config["updates"],
        initial=step,
        desc=f"{config['flow']} K={config['length']}",
        unit="update",
        disable=not sys.stderr.isatty(),
    )  # a bar in a terminal, silence in a notebook
    start = time.perf_counter()

    def save() -> None:
        seconds = elapsed + time.perf_counter() - start
        checkpointer.save(
            training_state(
                config, step, model, optimizer, history, seconds, order=order, position=position, running=running
            )
        )

    with interrupt_between_updates() as interrupt:
        while step < config["updates"]:
            interrupt.check(save if checkpointer is not None else None)  # saved here, resumed exactly here
            if checkpointer is not None and checkpointer.due(step):
                save()
            if position + config["batch_size"] > len(order):
                order, position = torch.randperm(len(train_pixels)), 0
            x = torch.bernoulli(train_pixels[order[position : position + config["batch_size"]].to(device_)])
            position += config["batch_size"]
            beta = inverse_temperature(step, config["anneal_updates"])
            rate = learning_rate_at(config, step)
            for group in optimizer.param_groups:
                group["lr"] = rate * group["scale"]
            loss = model.free_energy(x, beta).mean()
            run = f"MNIST run {config['flow']} K={config['length']}"
            value = checked_step(loss, optimizer, step, last_finite, run, checkpointer, config["clip_grad_norm"])
            last_finite = (step, value)
            running.append(value)
            step += 1
            progress.update()
            if step % config["eval_every"] == 0 or step == config["updates"]:
                history.append([step, beta, sum(running) / len(running), *_watch(model, held_out, protocol, config)])
                running = []
            if budgets and step == budgets[0]:
                budgets.pop(0)
                point = budget_config(config, step)
                scoring = time.perf_counter()
                seconds = elapsed + scoring - start
                _store_budget_point(model, point, scored, history, seconds, results_dir, version)
                start += time.perf_counter() - scoring  # the training time leaves out the budget point's scoring
    progress.close()
    _write_run(model, config, scored, history, elapsed + time.perf_counter() - start, folder, keep_parameters)


def _forked_rng(images: torch.Tensor) -> contextlib.AbstractContextManager:
    """Random numbers drawn inside (scoring ``images``) leave the training run's random state as it was."""
    return torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else [])


def _store_budget_point(
    model: DLGM,
    config: dict[str, Any],
    scored: torch.Tensor,
    history: list,
    seconds: float,
    results_dir: str | Path | None,
    version: str | None,
) -> None:
    """Store the run of ``config`` (a budget point) from the model as it is now, unless the cache has it already.

    Its scores draw the random numbers the shorter run would draw after its last update; the long run goes on
    with its own random state untouched."""
    if lookup("mnist", config, results_dir) is not None:
        return
    with _forked_rng(scored):
        write = partial(_write_run, model, config, scored, list(history), seconds)
        store_run("mnist", config, write, results_dir, version, earlier_seconds=seconds)
    model.train()


def _write_run(
    model: DLGM,
    config: dict[str, Any],
    scored: torch.Tensor,
    history: list,
    seconds: float,
    folder: Path,
    keep_parameters: bool = False,
) -> None:
    """Score the trained ``model`` and write a run's files into ``folder`` (``train_mnist``)."""
    protocol = full_config(config)["protocol"]
    model.eval()
    scores = score_images(model, scored, config["eval_samples"])
    metrics = {
        **summarize_scores(scores, "validation" if protocol == "validation" else "test"),
        "seconds_per_update": seconds / config["updates"],
        "history": history,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    with torch.no_grad():
        generator = torch.Generator(device=scored.device).manual_seed(1)
        prior_samples = torch.sigmoid(
            model.decoder(torch.randn(64, model.latent, generator=generator, device=scored.device))
        )
        originals = scored[:16]
        _, zk, _ = model.sample_posterior(originals)
        reconstructions = torch.sigmoid(model.decoder(zk))
    if protocol != "quick":
        torch.save({k: v.cpu().float() for k, v in scores.items()}, folder / "scores.pt")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    images = {"samples": prior_samples, "originals": originals, "reconstructions": reconstructions}
    torch.save({k: (v.cpu() * 255).round().to(torch.uint8) for k, v in images.items()}, folder / "images.pt")
    if keep_parameters or config["updates"] >= KEEP_PARAMETERS_FROM:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, folder / "parameters.pt")


@torch.no_grad()
def _watch(model: DLGM, held_out: torch.Tensor | None, protocol: str, config: dict[str, Any]) -> list[float]:
    """The held-out numbers of a history row (``train_mnist``): none, the bound, or the bound and ``-ln p(x)``."""
    if protocol == "quick":
        return [model.free_energy(held_out).mean().item()]
    if protocol == "validation":
        with _forked_rng(held_out):  # watching must not change the training run's random numbers
            scores = score_images(model, held_out, config["eval_samples"])
        return [scores["bound"].mean().item(), scores["nll"].mean().item()]
    return []


def fit_mnist(
    results_dir: str | Path | None = None, device: str = "cpu", data_root: str | None = None, **overrides: Any
) -> Run:
    """The cached MNIST run for ``mnist_config(**overrides)``, trained (or resumed) if not cached yet.

    ``device`` and ``data_root`` say where to compute and read data; they are
    not part of the config, so a run made on a GPU is found on a CPU.
    """
    train = partial(train_mnist, device=device, data_root=data_root, results_dir=results_dir)
    return cached_run("mnist", mnist_config(**overrides), train, results_dir)


def fit_mnist_runs(
    configs: list[dict[str, Any]],
    results_dir: str | Path | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    workers: int = 1,
    train: bool = True,
) -> list[Run | None]:
    """The cached runs of several MNIST configs, training the missing ones in ``workers`` processes.

    With ``train=False`` nothing is trained and a missing run is ``None``.
    Returns the runs in the order of ``configs``.
    """
    check_int("workers", workers)
    trainer = partial(train_mnist, device=device, data_root=data_root, results_dir=results_dir) if train else None
    return cached_runs("mnist", [mnist_config(**c) for c in configs], trainer, results_dir, workers)


def run_configs(models: list[list], **common: Any) -> list[dict[str, Any]]:
    """Configs for a list of ``[flow, length]`` models sharing ``common`` settings."""
    return [mnist_config(flow=flow, length=length, **common) for flow, length in models]
