"""Compiled loops, built on first use by the local C++ compiler, with the Python loops as fallback and reference.

``conv_loop()`` builds ``conv_loop.cpp`` (``torch.utils.cpp_extension.load``: about a minute, once; the build is
cached, by default under ``~/.cache/torch_extensions``, and reused while the source is unchanged) and returns it,
or None when compiled loops are switched off (``NF_NATIVE=0``) or cannot be built (no compiler, no ``ninja``: a
warning says why, and the Python loops run instead, with the same numbers, more slowly).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType

SWITCH = "NF_NATIVE"  # NF_NATIVE=0: the Python loops only


@functools.cache
def conv_loop() -> ModuleType | None:
    """The compiled loops of the convolutional flow (``nf.flows.conv_loops``), or None (module docstring)."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # no CUDA notice on a CPU machine
    try:
        from torch.utils.cpp_extension import load

        return load(
            "nf_conv_loop",
            [str(Path(__file__).with_name("conv_loop.cpp"))],
            extra_cflags=["-O3", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
        )
    except Exception as error:  # any build failure: the Python loops are correct, only slower
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(f"compiled loops unavailable, running the Python loops ({first_line}); {SWITCH}=0 silences this")
        return None
