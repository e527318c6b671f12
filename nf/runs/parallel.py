"""Running independent training jobs in worker processes of one thread each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from nf.validation import check_int


def _one_thread(task: Callable[[], Any]) -> None:
    torch.set_num_threads(1)  # small models: one thread per process beats processes sharing cores
    task()


def run_tasks(tasks: Sequence[Callable[[], Any]], workers: int) -> None:
    """Call every task: in this process when ``workers == 1`` or there is at most one task, else in
    ``workers`` spawned processes of one thread each.  Tasks must be picklable (module-level functions
    or ``functools.partial`` of them); the first error a task raises is raised here.
    """
    check_int("workers", workers)
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            task()
        return
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        for future in [pool.submit(_one_thread, task) for task in tasks]:
            future.result()
