"""Run configs: defaults merged with overrides, and the training settings every experiment checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nf.validation import check_choice, check_int

OPTIMIZERS = ("adam", "rmsprop")


def merge_defaults(kind: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``overrides``; unknown keys are an error."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {kind} config keys {sorted(unknown)}; allowed: {', '.join(defaults)}")
    return {**defaults, **overrides}


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
