"""Checks of arguments and config values: one line that names the bad value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_choice(what: str, value: Any, allowed: Iterable[str]) -> None:
    """``value`` must be one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def check_int(key: str, value: Any, minimum: int = 1) -> None:
    """``value`` must be an integer of at least ``minimum`` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = (
            "a positive integer"
            if minimum == 1
            else "a non-negative integer"
            if minimum == 0
            else f"an integer >= {minimum}"
        )
        raise ValueError(f"{key} must be {kind}, got {value!r}")


def check_positive(key: str, value: Any) -> None:
    """``value`` must be a positive real number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{key} must be a positive number, got {value!r}")
