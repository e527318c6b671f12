"""Validation shared by the experiment configs: one clear message naming the bad value and the allowed ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

OPTIMIZERS = ("adam", "rmsprop")


def merge_defaults(kind: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``overrides``; unknown keys are an error."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {kind} config keys {sorted(unknown)}; allowed: {', '.join(defaults)}")
    return {**defaults, **overrides}


def check_choice(what: str, value: Any, allowed: Iterable[str]) -> None:
    """``value`` must be one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def check_int(key: str, value: Any, minimum: int = 1) -> None:
    """``value`` must be an integer of at least ``minimum`` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise ValueError(f"{key} must be {kind}, got {value!r}")


def check_training(config: Mapping[str, Any], integer_keys: Iterable[str]) -> None:
    """The optimiser, the positive integer settings, and an annealing that reaches ``beta = 1`` before the end."""
    check_choice("optimizer", config["optimizer"], OPTIMIZERS)
    for key in integer_keys:
        check_int(key, config[key])
    if config["anneal_updates"] >= config["updates"]:
        raise ValueError(
            f"anneal_updates={config['anneal_updates']} must be smaller than updates={config['updates']}, "
            "or the free energy never reaches beta = 1"
        )
