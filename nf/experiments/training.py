"""What the toy and MNIST trainers share: annealing, the optimiser, a checked update, and resuming.

Both minimise an annealed free energy (paper eq. 20 for MNIST, section 6.1 for
the toys) with the inverse temperature ``beta_t`` of ``inverse_temperature``;
both save a checkpoint holding ``training_state`` and continue from it with
``resume``, so an interrupted run ends with the numbers of one that never
stopped.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nf.runs.checkpoint import Checkpointer


def inverse_temperature(step: int, anneal_updates: int) -> float:
    """``beta_t = min(1, 0.01 + t / anneal_updates)`` (paper section 6.1)."""
    return min(1.0, 0.01 + step / anneal_updates)


def make_optimizer(groups: list[dict[str, Any]], config: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam, or RMSprop with ``config["momentum"]`` (the paper's optimiser), over parameter ``groups``.

    Each group is ``{"params": [...], "scale": s}``; its step size is ``s`` times ``config["learning_rate"]``.
    Both update all tensors at once (Adam with PyTorch's fused kernel on CPU and CUDA, RMSprop with its
    ``foreach`` form): the same arithmetic as stepping tensor by tensor (tested in float64), without a round of
    small operations per tensor (the layer-by-layer NICE flow of 80 couplings has 490 tensors).
    """
    groups = [{**g, "lr": config["learning_rate"] * g["scale"]} for g in groups]
    if config["optimizer"] == "adam":
        fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
        return torch.optim.Adam(groups, lr=config["learning_rate"], **({"fused": True} if fused else {"foreach": True}))
    return torch.optim.RMSprop(groups, lr=config["learning_rate"], momentum=config["momentum"], foreach=True)


def training_state(
    config: dict[str, Any],
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    history: list,
    elapsed: float,
    **extra: Any,
) -> dict[str, Any]:
    """Everything a deterministic run needs to continue after ``step`` updates (``resume`` reads it back)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {
        "config": config,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": cuda,
        "history": history,
        "elapsed": elapsed,
        **extra,
    }


def resume(
    checkpointer: Checkpointer | None, config: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore ``model``, ``optimizer`` and the random state from the checkpoint of this ``config``, if there is one.

    Returns the checkpoint (for the trainer's own entries: step, history, ...), or None when training starts afresh.
    A checkpoint of this config whose tensors do not fit the model (written by code with another parameter layout)
    raises ``ValueError`` naming it: it is kept, not overwritten.
    """
    state = checkpointer.load() if checkpointer is not None else None
    if state is None or state.get("config") != config:
        return None
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise ValueError(
            f"the checkpoint {checkpointer.path} does not fit this model (written by other code?): "
            f"{str(error).splitlines()[0]}; move or delete it to train from the start"
        ) from None
    for group in optimizer.param_groups:  # a saved state brings its own implementation flags: keep this optimiser's
        group.update({flag: optimizer.defaults[flag] for flag in ("fused", "foreach") if flag in optimizer.defaults})
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the update and the last finite loss."""


def checked_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    step: int,
    last_finite: tuple[int, float],
    run: str,
    checkpointer: Checkpointer | None,
    clip_grad_norm: float = 0.0,
) -> float:
    """Backpropagate ``loss`` and take an optimiser step, unless the loss is NaN or infinite.

    Then the parameters are left untouched and ``TrainingDiverged`` names the
    update, the last finite loss ``last_finite = (update, value)`` and the
    checkpoint that is kept.  With ``clip_grad_norm > 0`` the gradient's
    global norm is clipped to it before the step.  Returns the loss value.
    """
    value = loss.item()
    if not math.isfinite(value):
        kept = f"; the last good checkpoint is kept at {checkpointer.path}" if checkpointer is not None else ""
        raise TrainingDiverged(
            f"{run} diverged: the loss became {value} at update {step}; "
            f"the last finite loss was {last_finite[1]:.4f} at update {last_finite[0]}{kept}"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad_norm > 0:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
    optimizer.step()
    return value
