"""Files written whole or not at all: written to a temporary file beside their place, flushed to disk, then renamed
over it, so a crash or an interrupt leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomically(
    path: Path, write: Callable[[IO[bytes]], None], prefix: str | None = None, suffix: str = ".tmp"
) -> None:
    """Call ``write`` on a temporary file beside ``path`` (named ``<prefix><random><suffix>``, by default
    ``.<name>.<random>.tmp``), then rename it over ``path``; the temporary file is removed if ``write`` fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix, dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
