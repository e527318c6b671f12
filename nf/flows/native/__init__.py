"""Compiled loops, built on first use by the local C++ compiler, with the Python loops as fallback and reference.

The fused chains keep one loop each in Python (the convolutional flow's in ``nf.flows.conv_loops``, the folded
NICE flow's in ``nf.flows.coupling_chain``) and its twin in C++ here (``conv_loop.cpp``, ``coupling_loop.cpp``):
the same steps on the same stored tensors, with each matrix product a BLAS call and each pointwise step one pass
over the rows, on one range of rows per thread.  ``loops()`` builds them (``torch.utils.cpp_extension.load``: about
a minute, once; the build is cached, by default under ``~/.cache/torch_extensions``, under a name that hashes the
sources) and returns the module, or None when compiled loops are switched off (``NF_NATIVE=0``), forced off in this
process for a while (``python_loops()``), not made for the tensors at hand (on a GPU, or not float32 or float64),
or cannot be built (no compiler, no ``ninja``, a compiler without OpenMP such as Apple's clang: a warning says why,
and the Python loops run instead, more slowly; in float32 they round differently).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

SWITCH = "NF_NATIVE"  # NF_NATIVE=0: the Python loops only
SOURCES = ("module.cpp", "conv_loop.cpp", "coupling_loop.cpp", "loops.h", "rows.h")  # the headers: for the hash
FLAGS = ["-O3", "-fopenmp"]  # OpenMP: at::parallel_for splits the rows between threads
_forced_python = 0


def _build_name(paths: list[Path]) -> str:
    """``nf_loops_<hash>``: the hash of the sources and flags, so that checkouts with other sources (or another copy of
    the same ones) never load each other's build from PyTorch's shared build cache."""
    digest = hashlib.sha256(" ".join(FLAGS).encode())
    for path in paths:
        digest.update(path.read_bytes())
    return f"nf_loops_{digest.hexdigest()[:12]}"


@functools.cache
def _build() -> ModuleType | None:
    """The compiled module, built or loaded from the build cache; None if it cannot be built (a warning)."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)  # no notice about CUDA on a CPU machine; errors still show
    try:
        from torch.utils.cpp_extension import load

        paths = [Path(__file__).with_name(name) for name in SOURCES]
        sources = [str(p) for p in paths if p.suffix == ".cpp"]
        module = load(_build_name(paths), sources, extra_cflags=FLAGS, extra_ldflags=["-fopenmp"])
    except Exception as error:  # any build failure: the Python loops are correct, only slower
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(f"compiled loops unavailable, running the Python loops ({first_line}); {SWITCH}=0 silences this")
        return None
    finally:
        log.setLevel(level)
    if not module.check_blas():
        warnings.warn("the BLAS symbols PyTorch exports disagree with torch.mm: the compiled loops multiply with ATen")
    return module


def loops(like: Tensor | None = None) -> ModuleType | None:
    """The compiled loops to run (on tensors like ``like``: float32 or float64, on the CPU), or None for the Python
    ones (module docstring)."""
    if _forced_python or os.environ.get(SWITCH, "1") == "0":
        return None
    if like is not None and (like.device.type != "cpu" or like.dtype not in (torch.float32, torch.float64)):
        return None
    return _build()


@contextlib.contextmanager
def python_loops() -> Iterator[None]:
    """Within this block the fused chains run their Python loops (the reference), compiled loops or not."""
    global _forced_python
    _forced_python += 1
    try:
        yield
    finally:
        _forced_python -= 1
