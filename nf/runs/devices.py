"""Choosing the device a chapter computes on."""

from __future__ import annotations

import torch

DEVICES = ("cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)`` for ``cpu`` or ``cuda[:N]``, with a clear error when it is not available."""
    kind = str(name).split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but no CUDA GPU is available here; use device 'cpu'")
    return torch.device(name)
