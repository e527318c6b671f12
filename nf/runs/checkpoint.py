"""Checkpoints that let a training run survive an interrupt or a crash.

A checkpoint holds everything a deterministic run needs to continue as if it
had never stopped: model and optimiser state, the global random-number state,
the update counter and the history logged so far.  It is written atomically
(to a temporary file, then renamed), so a kill during a save leaves the
previous checkpoint intact.

``interrupt_between_updates`` turns a first Ctrl-C (SIGINT) into a
``KeyboardInterrupt`` raised by ``check()`` at the next update boundary, so
an interrupt always stops a run at a well-defined point; Python's own
handler can lose a ``KeyboardInterrupt`` raised inside a finaliser.  A
second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def save_atomically(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class UnreadableCheckpoint(RuntimeError):
    """A checkpoint that exists but cannot be read; the message names it.  It is kept, never silently replaced."""


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none.

    Only tensors and plain containers are unpickled (``weights_only=True``): a file planted in a shared results
    folder cannot run code in the jobs that read it.  A checkpoint that cannot be read (damaged, written by an
    incompatible version, or holding other objects) raises ``UnreadableCheckpoint``: hours of training are never
    thrown away without a word.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise UnreadableCheckpoint(
            f"the checkpoint {path} cannot be read ({type(error).__name__}: {reason}); it is kept: "
            "move or delete it to train this run from the start"
        ) from None


class Checkpointer:
    """Decides when to save (every ``every_updates`` updates, or every ``every_seconds``) and saves."""

    def __init__(self, path: Path, every_updates: int | None = None, every_seconds: float = 120.0):
        self.path = Path(path)
        self.every_updates = every_updates
        self.every_seconds = every_seconds
        self._last_save = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every_updates is not None and step % self.every_updates == 0:
            return True
        return time.monotonic() - self._last_save >= self.every_seconds

    def save(self, state: dict[str, Any]) -> None:
        save_atomically(state, self.path)
        self._last_save = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        return load_checkpoint(self.path)


class InterruptFlag:
    """Set by the first SIGINT; ``check()`` raises ``KeyboardInterrupt`` once it is set."""

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def interrupt_between_updates() -> Iterator[InterruptFlag]:
    """Within the block, SIGINT sets a flag that the training loop checks between updates (module docstring).

    Outside the main thread, where handlers cannot be installed, the flag is
    never set and Python's own handling applies.
    """
    flag = InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, flag.handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
