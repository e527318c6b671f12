"""Train missing runs as jobs: on this machine (``local``) or on a SLURM cluster (``slurm``), through submitit.

The run cache is the meeting point: a job trains its runs with ``cached_runs``
(resuming each from its checkpoint, if an earlier job left one) and writes
each run's folder atomically, so any number of jobs, on any number of
machines sharing one results folder, can work on one set of runs.  Runs
already cached are never submitted, nor runs that a live job is to train
(``nf.runs.status``: each submitted job is recorded beside its runs, and the
record is removed once a run is cached).  A job that fails or is preempted leaves
its checkpoints behind; submitting the same runs again resumes them, and a
job that reaches its time limit or is preempted is requeued by submitit and
resumes by itself.

One MNIST run is one job, and so is one analysis of a cached MNIST run (``gaps``: ``nf.experiments.gaps``); toy
runs, seconds each, go ``toy_batch`` to a job.

Example::

    runs = [("mnist", config_a), ("mnist", config_b)]
    todo, _ = runs_to_submit(runs)                                   # not cached, not being trained, not queued
    errors = run_local_jobs(todo, folder, parallel_jobs=2)             # waits; [] if every job succeeded
    slurm = make_executor("slurm", folder, slurm_parameters("gpu", gpus_per_job=1))
    jobs = submit_jobs(todo, slurm, device="cuda")                      # returns at once
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import submitit
import submitit.helpers
import torch

from nf.experiments.gaps import fit_gaps
from nf.experiments.mnist import mnist_config, train_mnist
from nf.experiments.toy import toy_config, train_toy
from nf.runs.cache import cached_runs, config_hash, results_root
from nf.runs.status import forget_job, record_job, run_states
from nf.validation import check_choice, check_int

EXECUTORS = ("local", "slurm")
TOY_BATCH = 16
LOCAL_TIMEOUT_MINUTES = 7 * 24 * 60  # submitit's local default (2 minutes) would end every MNIST run

Runs = Sequence[tuple[str, dict[str, Any]]]


def runs_to_submit(
    runs: Runs, force: bool = False, results_dir: str | os.PathLike | None = None
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The runs to submit, missing or interrupted ones (and with ``force`` those being trained now or queued in a
    job), and every run's state (``nf.runs.status.run_states``)."""
    states = [state for state, _ in run_states(runs, results_dir)]
    wanted = ("missing", "interrupted", "running", "queued") if force else ("missing", "interrupted")
    return [run for run, state in zip(runs, states) if state in wanted], states


def job_batches(runs: Runs, toy_batch: int = TOY_BATCH) -> list[list[tuple[str, dict[str, Any]]]]:
    """The runs grouped into jobs: one MNIST run per job, toy runs ``toy_batch`` to a job."""
    check_int("toy runs per job", toy_batch)
    toy = [run for run in runs if run[0] == "toy"]
    other = [[run] for run in runs if run[0] != "toy"]
    return [toy[i : i + toy_batch] for i in range(0, len(toy), toy_batch)] + other


class TrainRuns(submitit.helpers.Checkpointable):
    """A job's body: train (or resume, or find cached) each run, one after another; return their cache keys.

    Checkpointable: when the scheduler signals a time limit or a preemption, the run being trained saves at its
    next update boundary, and only then does submitit requeue the job with the same runs
    (``nf.runs.checkpoint.interrupt_between_updates`` holds the signal till then); each run resumes from its own
    checkpoint, the one in progress exactly where it stopped.  ``checkpoint_every``
    saves a run checkpoint every that many updates, as well as every few
    minutes.
    """

    def __init__(
        self,
        results_dir: str,
        device: str = "cpu",
        data_root: str | None = None,
        threads: int = 1,
        checkpoint_every: int | None = None,
    ):
        self.results_dir, self.device, self.data_root = results_dir, device, data_root
        self.threads, self.checkpoint_every = threads, checkpoint_every

    def __call__(self, runs: Runs) -> list[str]:
        torch.set_num_threads(self.threads)
        for experiment, config in runs:
            check_choice("experiment", experiment, ("toy", "mnist", "gaps"))
            if experiment == "gaps":  # an analysis of a cached run
                fit_gaps(config, self.results_dir, self.data_root)
                forget_job("gaps", config, self.results_dir)
            elif experiment == "toy":
                trainer = partial(train_toy, checkpoint_every=self.checkpoint_every)
                cached_runs("toy", [toy_config(**config)], trainer, self.results_dir)
                forget_job("toy", config, self.results_dir)
            else:
                trainer = partial(
                    train_mnist,
                    device=self.device,
                    data_root=self.data_root,
                    checkpoint_every=self.checkpoint_every,
                    results_dir=self.results_dir,
                )
                cached_runs("mnist", [mnist_config(**config)], trainer, self.results_dir)
                forget_job("mnist", config, self.results_dir)
        return [config_hash(experiment, config) for experiment, config in runs]


def slurm_parameters(
    partition: str | None = None,
    gpus_per_job: int = 0,
    time_minutes: int = 24 * 60,
    cpus_per_job: int = 1,
    parallel_jobs: int | None = None,
) -> dict[str, Any]:
    """The ``sbatch`` settings of every job, by their SLURM names (as submitit's SLURM executor takes them)."""
    check_int("GPUs per job", gpus_per_job, minimum=0)
    check_int("job time in minutes", time_minutes)
    check_int("CPUs per job", cpus_per_job)
    parameters: dict[str, Any] = {"job_name": "nf", "time": time_minutes, "cpus_per_task": cpus_per_job}
    if partition is not None:
        if not partition or any(c.isspace() for c in partition):
            raise ValueError(f"invalid SLURM partition {partition!r}")
        parameters["partition"] = partition
    if gpus_per_job:
        parameters["gpus_per_node"] = gpus_per_job
    if parallel_jobs is not None:
        check_int("parallel jobs", parallel_jobs)
        parameters["array_parallelism"] = parallel_jobs
    return parameters


def slurm_script(parameters: dict[str, Any], folder: str | os.PathLike, jobs: int = 1) -> str:
    """The ``sbatch`` script submitit writes for these settings, as an array of ``jobs`` jobs when there are
    several (built without a cluster, by submitit's own function)."""
    check_int("jobs", jobs)
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    array = {"map_count": jobs} if jobs > 1 else {}
    return submitit.slurm.slurm._make_sbatch_string(command=command, folder=str(folder), **parameters, **array)


def make_executor(
    kind: str, folder: str | os.PathLike, slurm: dict[str, Any] | None = None, device: str = "cpu"
) -> submitit.Executor:
    """A submitit executor writing its logs to ``folder``: ``local`` (subprocesses here, seeing this machine's
    GPUs when ``device`` is CUDA) or ``slurm`` (``sbatch`` with the ``slurm_parameters``)."""
    check_choice("executor", kind, EXECUTORS)
    if kind == "local":
        executor = submitit.LocalExecutor(folder)
        gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MINUTES, gpus_per_node=gpus)
        return executor
    executor = submitit.SlurmExecutor(folder)  # raises if this machine has no SLURM (no srun)
    executor.update_parameters(**(slurm or slurm_parameters()))
    return executor


def _job_body(
    results_dir: str | os.PathLike | None, device: str, data_root: str | None, threads: int, every: int | None
) -> TrainRuns:
    folder = str(Path(results_root(results_dir)).resolve())  # jobs may run elsewhere: an absolute path
    return TrainRuns(folder, device, data_root, threads, every)


def submit_jobs(
    runs: Runs,
    executor: submitit.Executor,
    results_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    toy_batch: int = TOY_BATCH,
    threads: int = 1,
    checkpoint_every: int | None = None,
) -> list[submitit.Job]:
    """Submit every batch of ``runs`` (``job_batches``) at once, each job training with ``threads`` threads, and
    record each job beside its runs (``nf.runs.status.record_job``); return submitit's job handles.

    On SLURM the jobs form one job array (at most ``array_parallelism`` of them run at once).
    """
    body = _job_body(results_dir, device, data_root, threads, checkpoint_every)
    batches = job_batches(runs, toy_batch)
    if isinstance(executor, submitit.SlurmExecutor) and batches:
        with executor.batch():
            jobs = [executor.submit(body, batch) for batch in batches]
    else:
        jobs = [executor.submit(body, batch) for batch in batches]
    for job, batch in zip(jobs, batches):
        _record(job, batch, results_dir)
    return jobs


def _record(job: submitit.Job, batch: Runs, results_dir: str | os.PathLike | None) -> None:
    """Record ``job`` as the job of each run of its ``batch`` (a local job by its process id)."""
    scheduler = "slurm" if isinstance(job, submitit.SlurmJob) else "local"
    for experiment, config in batch:
        record_job(experiment, config, scheduler, job.job_id, results_dir)


def run_local_jobs(
    runs: Runs,
    folder: str | os.PathLike,
    parallel_jobs: int = 1,
    results_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    toy_batch: int = TOY_BATCH,
    checkpoint_every: int | None = None,
    report: Callable[[str], None] = print,
    poll_seconds: float = 0.5,
) -> list[str]:
    """Train ``runs`` as subprocess jobs on this machine, at most ``parallel_jobs`` at a time (one thread each),
    and wait for them.

    ``report`` gets one line per job started, finished or failed.  Returns the error of each failed job (its
    runs keep their checkpoints; run again to resume them).
    """
    check_int("parallel jobs", parallel_jobs)
    executor = make_executor("local", folder, device=device)
    body = _job_body(results_dir, device, data_root, 1, checkpoint_every)
    waiting, running, errors = job_batches(runs, toy_batch), [], []
    while waiting or running:
        while waiting and len(running) < parallel_jobs:
            batch = waiting.pop(0)
            running.append((executor.submit(body, batch), batch))
            _record(running[-1][0], batch, results_dir)
            report(f"job {running[-1][0].job_id} started: {describe(batch)}")
        time.sleep(poll_seconds)
        for job, batch in [(job, batch) for job, batch in running if job.done()]:
            running.remove((job, batch))
            try:
                job.result()
                report(f"job {job.job_id} finished: {describe(batch)}")
            except Exception as error:  # the job's own exception, or a killed job
                errors.append(
                    f"job {job.job_id} failed ({describe(batch)}): {job_error(error)}; log {job.paths.stderr}"
                )
                report(errors[-1])
    return errors


def job_error(error: Exception) -> str:
    """The last line of the traceback in submitit's report of a failed job (the exception and its message)."""
    text = str(error)
    sections = text.split("-" * 22)  # submitit frames the job's traceback with rules of dashes
    trace = sections[1] if len(sections) > 2 else text
    lines = [line for line in trace.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else repr(error)


def describe(batch: Runs) -> str:
    """``"mnist run <key>"`` or ``"16 toy runs"``."""
    keys = [config_hash(experiment, config) for experiment, config in batch]
    return f"{batch[0][0]} run {keys[0]}" if len(keys) == 1 else f"{len(keys)} {batch[0][0]} runs"
