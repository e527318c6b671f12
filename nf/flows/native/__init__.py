"""Compiled loops, built on first use by the local C++ compiler, with the Python loops as fallback and reference.

The fused chains keep one loop each in Python (the convolutional flow's in ``nf.flows.conv_loops``, the folded
NICE flow's in ``nf.flows.coupling_chain``) and its twin in C++ here (``conv_loop.cpp``, ``coupling_loop.cpp``):
the same steps on the same stored tensors, with each matrix product a BLAS call and each pointwise step one pass
over the rows, on one range of rows per thread.  ``loops()`` builds them (``torch.utils.cpp_extension.load``: about
a minute, once; the build is cached, by default under ``~/.cache/torch_extensions``, and rebuilt when a source
changes) and returns the module, or None when compiled loops are switched off (``NF_NATIVE=0``), forced off for a
while (``python_loops()``), or cannot be built (no compiler, no ``ninja``: a warning says why, and the Python loops
run instead, with the same numbers, more slowly).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

SWITCH = "NF_NATIVE"  # NF_NATIVE=0: the Python loops only
SOURCES = ("module.cpp", "conv_loop.cpp", "coupling_loop.cpp")
_forced_python = 0


@functools.cache
def _build() -> ModuleType | None:
    """The compiled module, built or loaded from the build cache; None if it cannot be built (a warning)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # no CUDA notice on a CPU machine
    try:
        from torch.utils.cpp_extension import load

        here = Path(__file__).parent
        return load(
            "nf_loops",
            [str(here / name) for name in SOURCES],
            extra_cflags=["-O3", "-fopenmp"],  # OpenMP: at::parallel_for splits the rows between threads
            extra_ldflags=["-fopenmp"],
        )
    except Exception as error:  # any build failure: the Python loops are correct, only slower
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(f"compiled loops unavailable, running the Python loops ({first_line}); {SWITCH}=0 silences this")
        return None


def loops() -> ModuleType | None:
    """The compiled loops to run, or None for the Python ones (module docstring)."""
    if _forced_python or os.environ.get(SWITCH, "1") == "0":
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
