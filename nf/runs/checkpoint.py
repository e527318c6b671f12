"""Checkpoints that let a training run survive an interrupt or a crash.

A checkpoint holds everything a deterministic run needs to continue as if it
had never stopped: model and optimiser state, the global random-number state,
the update counter and the history logged so far.  It is written atomically
(to a temporary file, then renamed), so a kill during a save leaves the
previous checkpoint intact.

``interrupt_between_updates`` turns a first Ctrl-C (SIGINT) into a
``KeyboardInterrupt`` raised by ``check(save)`` at the next update boundary,
after ``save()`` has saved the run there, so an interrupt always stops a run
at a well-defined point and loses no update; Python's own handler can lose a
``KeyboardInterrupt`` raised inside a finaliser.  A second Ctrl-C interrupts
at once.  A scheduler's signal that a handler is already waiting for
(SIGUSR1 or SIGUSR2: submitit's requeue on a time limit or a preemption) is
held the same way: the run saves at the next boundary, and only then does
that handler run (and requeue the job, which resumes where the run stopped).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from nf.runs.atomic import write_atomically


def save_atomically(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path`` (``.<name>.<random>.tmp``), then rename over it."""
    write_atomically(path, lambda f: torch.save(state, f))


def remove_checkpoint(path: Path) -> None:
    """Delete the checkpoint at ``path`` of a finished run, and the temporary files of saves that a killed process
    left beside it (``save_atomically``: ``.<name>.<random>.tmp``)."""
    path.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


UNREADABLE = ".unreadable"  # the suffix of a checkpoint moved aside because it could not be read


class UnreadableCheckpoint(RuntimeError):
    """A checkpoint that exists but cannot be read; the message names it."""


def load_checkpoint(path: Path, move_aside: bool = False, mapped: bool = False) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none; ``mapped``: its tensors mapped from the file, not read
    (``torch.load(mmap=True)``), for a reader that wants only its small entries (``python -m nf runs status``).

    Only tensors and plain containers are unpickled (``weights_only=True``): a file planted in a shared results
    folder cannot run code in the jobs that read it.  A checkpoint that cannot be read (damaged, written by an
    incompatible version, or holding other objects) is never silently dropped: it raises ``UnreadableCheckpoint``
    naming it, or, with ``move_aside`` (a trainer about to start the run over), is renamed to
    ``<name>.unreadable`` with a warning that names both, and None is returned.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mapped)
    except Exception as error:
        reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
        if not move_aside:
            raise UnreadableCheckpoint(f"the checkpoint {path} cannot be read ({reason})") from None
    aside = path.with_name(path.name + UNREADABLE)
    os.replace(path, aside)
    warnings.warn(
        f"the checkpoint {path} cannot be read ({reason}); moved aside to {aside.name}, and this run starts over",
        stacklevel=2,
    )
    return None


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
        return load_checkpoint(self.path, move_aside=True)


DEFERRED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # held until an update boundary when a handler awaits them


class InterruptFlag:
    """Set by the first SIGINT (or a held scheduler signal); ``check(save)`` saves and stops the run once it is set."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        if self.signum is None or signum == signal.SIGINT:
            self.signum = signum

    def check(self, save: Callable[[], None] | None = None) -> None:
        """At an update boundary: if a signal arrived, call ``save`` (if given), then stop the run
        (``KeyboardInterrupt`` for SIGINT, ``HeldSignal`` for a scheduler's signal)."""
        if self.signum is None:
            return
        if save is not None:
            save()
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise HeldSignal(self.signum)


class HeldSignal(BaseException):
    """A scheduler's signal, held until the run saved at an update boundary; ``interrupt_between_updates`` then
    hands it to the handler that was waiting for it."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signal.Signals(signum).name} at an update boundary")
        self.signum = signum


@contextmanager
def interrupt_between_updates() -> Iterator[InterruptFlag]:
    """Within the block, SIGINT (and SIGUSR1/SIGUSR2 where a Python handler awaits them) set a flag that the
    training loop checks between updates (module docstring).

    Outside the main thread, where handlers cannot be installed, the flag is
    never set and Python's own handling applies.
    """
    flag = InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    awaited = [s for s in DEFERRED_SIGNALS if callable(signal.getsignal(s))]
    previous = {s: signal.signal(s, flag.handle) for s in (signal.SIGINT, *awaited)}
    held = None
    try:
        yield flag
    except HeldSignal as signalled:
        held = signalled.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held is not None:
        previous[held](held, None)  # e.g. submitit's checkpoint and requeue, after the run saved
        raise KeyboardInterrupt(f"stopped by {signal.Signals(held).name}")
