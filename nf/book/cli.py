"""Command line: ``python -m nf book run [CHAPTER ...] [--profile P] [--device D] [-p NAME VALUE ...] [--output F]``,
``python -m nf book build``, ``python -m nf runs status CHAPTER [--profile P] [-p NAME VALUE ...]`` and
``python -m nf runs train CHAPTER [--profile P] [-p NAME VALUE ...] --executor local|slurm [--jobs N] [--keys KEY ...]
...`` and
``python -m nf runs recheck EXPERIMENT FOLDER``.

Bad input gets one line naming the bad value and the allowed ones, and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from nf.book.chapters import chapter_names, execution_order
from nf.book.profiles import PROFILE_NAMES
from nf.runs.devices import DEVICES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nf", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    book = commands.add_parser("book", help="run chapters or build the HTML book")
    actions = book.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="execute chapters with papermill under a parameter profile")
    run.add_argument(
        "chapters", nargs="*", metavar="CHAPTER", help=f"chapters to run (default: all): {', '.join(chapter_names())}"
    )
    run.add_argument(
        "--profile", default="report", help=f"parameter profile: {', '.join(PROFILE_NAMES)} (default: report)"
    )
    run.add_argument("--device", default=None, help=f"device: {', '.join(DEVICES)} (default: the profile's)")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a chapter parameter (or one key of a dictionary parameter, "
        "e.g. mnist.updates); VALUE is read as YAML, e.g. -p flow_lengths '[2, 8]'",
    )
    run.add_argument(
        "--output",
        default=None,
        metavar="FOLDER",
        help="write the executed chapters to FOLDER/<chapter>.ipynb (default: book/, what the book is built from)",
    )
    build = actions.add_parser("build", help="build the HTML book into _build/html from the executed chapters")
    build.add_argument("--output", default=None, help="folder to build into (default: the repository)")
    runs = commands.add_parser("runs", help="the runs behind a chapter")
    run_actions = runs.add_subparsers(dest="action", required=True)
    status = run_actions.add_parser(
        "status", help="which of a chapter's runs are cached, running, queued, interrupted or missing"
    )
    _chapter_arguments(status)
    train = run_actions.add_parser(
        "train",
        help="train a chapter's missing runs as jobs (submitit): on this machine, or on a SLURM cluster",
    )
    _chapter_arguments(train)
    train.add_argument("--executor", default=None, help="local (subprocesses here, waited for) or slurm (sbatch)")
    train.add_argument(
        "--jobs", type=int, default=None, help="at most N jobs at once (default: local 1, slurm submitit's 256)"
    )
    train.add_argument("--device", default="cpu", help=f"device each job trains on: {', '.join(DEVICES)}")
    train.add_argument("--toy-batch", type=int, default=None, help="toy runs per job (default: 16)")
    train.add_argument("--log-folder", default=None, help="submitit's logs (default: <results>/.jobs)")
    train.add_argument("--slurm-partition", default=None, help="SLURM partition")
    train.add_argument("--slurm-gpus-per-job", type=int, default=None, help="GPUs per job (default: 0)")
    train.add_argument("--slurm-time", type=int, default=None, help="time limit per job in minutes (default: 1440)")
    train.add_argument("--slurm-cpus-per-job", type=int, default=None, help="CPUs per job (default: 1)")
    train.add_argument(
        "--keys",
        nargs="+",
        default=None,
        metavar="KEY",
        help="train only these of the chapter's runs (their cache keys, as runs status lists them)",
    )
    train.add_argument("--force", action="store_true", help="also submit runs that are being trained or queued")
    train.add_argument("--dry-run", action="store_true", help="list the jobs (and the sbatch script); submit nothing")
    recheck = run_actions.add_parser(
        "recheck",
        help="compare runs retrained from scratch in another results folder with the cached ones, and store the "
        "comparisons in the cache (rechecks/)",
    )
    recheck.add_argument("experiment", metavar="EXPERIMENT", help="toy, mnist or gaps")
    recheck.add_argument("folder", metavar="FOLDER", help="the results folder the runs were retrained into")
    return parser


def _chapter_arguments(parser: argparse.ArgumentParser) -> None:
    """The chapter, its profile and parameter overrides, as ``runs status`` and ``runs train`` take them."""
    parser.add_argument("chapter", metavar="CHAPTER", help=f"one of {', '.join(chapter_names())}")
    parser.add_argument("--profile", default="report", help=f"{', '.join(PROFILE_NAMES)} (default: report)")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="as for book run"
    )


SLURM_FLAGS = {
    "partition": "--slurm-partition",
    "gpus_per_job": "--slurm-gpus-per-job",
    "time_minutes": "--slurm-time",
    "cpus_per_job": "--slurm-cpus-per-job",
}


def _train(args: argparse.Namespace) -> int:
    """Submit the chapter's missing runs as jobs (``nf.experiments.jobs``); local jobs are waited for."""
    from nf.book.chapter_runs import configs_to_train
    from nf.experiments import jobs
    from nf.runs.cache import results_root
    from nf.validation import check_choice, check_int

    args.chapters = [args.chapter]
    if args.executor is None:
        raise ValueError(f"choose where jobs run: --executor {' or '.join(jobs.EXECUTORS)}")
    check_choice("executor", args.executor, jobs.EXECUTORS)
    # local jobs run here, so the device must exist here; on a cluster it need only be a valid name here
    _validate_run(args, device_here=args.executor == "local")
    if args.executor == "slurm":
        check_choice("device", args.device.split(":")[0], DEVICES)
    toy_batch = jobs.TOY_BATCH if args.toy_batch is None else args.toy_batch
    check_int("toy runs per job", toy_batch)
    if args.jobs is not None:
        check_int("jobs", args.jobs)
    given = {name: getattr(args, flag[2:].replace("-", "_")) for name, flag in SLURM_FLAGS.items()}
    given = {name: value for name, value in given.items() if value is not None}
    if args.executor == "local" and given:
        flags = [SLURM_FLAGS[name] for name in given]
        raise ValueError(f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} only to --executor slurm")
    if args.executor == "slurm" and args.device.startswith("cuda") and not given.get("gpus_per_job"):
        raise ValueError(f"--device {args.device} needs --slurm-gpus-per-job 1 or more")

    overrides = {key: _parse_value(key, value) for key, value in args.parameter}
    runs, waiting = configs_to_train(args.chapter, args.profile, overrides)
    if args.keys is not None:
        runs = chosen_runs(args.chapter, args.profile, overrides, runs, args.keys, args.parameter)
        waiting = None
    chosen, states = jobs.runs_to_submit(runs, force=args.force)
    batches = jobs.job_batches(chosen, toy_batch)
    print(f"{_count(len(runs), 'run')} settled: {', '.join(_counts(states))}; {_count(len(batches), 'job')} to submit")
    if left_alone(states) and not args.force:
        print(left_alone(states))
    if waiting:
        print(waiting)
    folder = Path(args.log_folder) if args.log_folder else results_root() / ".jobs"
    if args.dry_run:
        for batch in batches:
            print(f"job: {jobs.describe(batch)}")
    if args.executor == "slurm":
        parameters = jobs.slurm_parameters(parallel_jobs=args.jobs, **given)
        if args.dry_run:
            print(jobs.slurm_script(parameters, folder, max(len(batches), 1)))
            return 0
        executor = jobs.make_executor("slurm", folder, parameters)
        threads = given.get("cpus_per_job", 1)
        submitted = jobs.submit_jobs(chosen, executor, device=args.device, toy_batch=toy_batch, threads=threads)
        print(submitted_line([job.job_id for job in submitted]))
        print(f"progress: {status_command(args.chapter, args.profile, args.parameter)}")
        return 0
    if args.dry_run or not batches:
        return 0
    errors = jobs.run_local_jobs(chosen, folder, args.jobs or 1, device=args.device, toy_batch=toy_batch)
    if errors:
        print(f"{_count(len(errors), 'job')} failed; their runs keep their checkpoints: run again to resume them")
    return 1 if errors else 0


def chosen_runs(
    chapter: str,
    profile: str,
    overrides: dict[str, Any],
    settled: list[tuple[str, dict[str, Any]]],
    keys: list[str],
    parameters: list[tuple[str, str]] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """The settled runs whose cache keys are ``keys``, in that order (each once); a key that is not one of the
    chapter's runs (under ``overrides``, given on the command line as ``parameters``), or names a run whose config
    is not settled yet, gets a one-line error."""
    from nf.book.chapter_runs import chapter_configs
    from nf.runs.cache import config_hash

    by_key = {config_hash(experiment, config): (experiment, config) for experiment, config in settled}
    every = {config_hash(experiment, config) for experiment, config in chapter_configs(chapter, profile, overrides)}
    for key in keys:
        if key not in every:
            raise ValueError(
                f"{key!r} is not a run of chapter {chapter} (profile {profile}); "
                f"{status_command(chapter, profile, list(parameters))} lists its runs' keys"
            )
        if key not in by_key:
            raise ValueError(f"run {key} is not settled yet: it waits for runs it depends on; train those first")
    return [by_key[key] for key in dict.fromkeys(keys)]


def left_alone(states: list[str]) -> str | None:
    """The line saying which runs ``runs train`` does not submit without ``--force`` (runs being trained, and runs
    queued in a job still to train them), or None if there are none."""
    counts = [(states.count(state), state) for state in ("running", "queued") if state in states]
    if not counts:
        return None
    runs = "run is" if sum(n for n, _ in counts) == 1 else "runs are"
    held = " and ".join(f"{n} {state}" for n, state in counts)
    return f"{held} {runs} left alone (being trained, or held by a job still to train them); --force submits them too"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _counts(states: list[str]) -> list[str]:
    from nf.runs.status import STATES

    return [f"{states.count(state)} {state}" for state in STATES if state in states] or ["none"]


def _status(args: argparse.Namespace) -> None:
    """Print one line per run of the chapter and a summary (``nf.runs.status``)."""
    from nf.book.chapter_runs import chapter_configs
    from nf.runs.status import status_rows, status_summary

    args.chapters, args.device = [args.chapter], None
    _validate_run(args)
    overrides = {key: _parse_value(key, value) for key, value in args.parameter}
    rows = status_rows(chapter_configs(args.chapter, args.profile, overrides))
    for row in rows:
        detail = f" ({row['detail']})" if row["detail"] else ""
        print(f"{row['state']:<11} {row['experiment']:<5} {row['key']}  {row['run']}{detail}")
    print(status_summary(rows) if rows else f"chapter {args.chapter} trains no runs")


def _recheck(args: argparse.Namespace) -> None:
    """Store and print the recheck of every run retrained in ``args.folder`` that the cache holds
    (``nf.runs.recheck``)."""
    from nf.runs.recheck import compared, largest, record_rechecks, reproduced

    records = record_rechecks(args.experiment, args.folder)
    for record in records:
        scores = f"{largest(record, 'scores.pt/'):.3g}" if compared(record, "scores.pt/") else "none"
        versions = f"{record['committed']['git_commit'][:7]} -> {record['retrained']['git_commit'][:7]}"
        print(
            f"{record['key']}  {'reproduced' if reproduced(record) else 'NOT reproduced'}; largest |difference|: "
            f"per-image scores {scores}, all {largest(record):.3g} (code {versions})"
        )
    print(f"rechecked {_count(len(records), 'run')} of {args.experiment} retrained in {args.folder}")


def _validate_run(args: argparse.Namespace, device_here: bool = True) -> None:
    """Known chapters and profile; ``args.device`` (if given and ``device_here``) available on this machine."""
    from nf.runs.devices import resolve_device

    unknown = [name for name in args.chapters if name not in chapter_names()]
    if unknown:
        raise ValueError(f"unknown chapter {unknown[0]!r}; choose from {', '.join(chapter_names())}")
    if args.profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {args.profile!r}; choose one of {', '.join(PROFILE_NAMES)}")
    if args.device is not None and device_here:
        resolve_device(args.device)


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as a number as YAML 1.2 does (PyYAML's YAML 1.1 wants ``1.0e-3``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def submitted_line(job_ids: list[str]) -> str:
    """``submitted 2 jobs: 17, 18``, or ``submitted no jobs`` when there was nothing to submit."""
    return f"submitted {_count(len(job_ids), 'job')}: {', '.join(job_ids)}" if job_ids else "submitted no jobs"


def status_command(chapter: str, profile: str, parameters: list[tuple[str, str]]) -> str:
    """The ``runs status`` command that follows the runs submitted with these ``-p`` overrides (quoted for a
    shell): without them it would show another set of runs."""
    overrides = "".join(f" -p {shlex.quote(key)} {shlex.quote(value)}" for key, value in parameters)
    return f"python -m nf runs status {chapter} --profile {profile}{overrides}"


def _parse_value(key: str, value: str):
    """A ``-p NAME VALUE`` value read as YAML (``3``, ``1e-3``, ``cpu``, ``[2, 8]``, ``{updates: 60}``)."""
    try:
        return yaml.load(value, Loader=_YamlLoader)
    except yaml.YAMLError:
        raise ValueError(
            f"cannot read the value {value!r} of parameter {key!r} (YAML, e.g. 3, 1e-3, cpu, [2, 8])"
        ) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "runs" and args.action == "train":
            return _train(args)
        if args.command == "runs" and args.action == "recheck":
            _recheck(args)
        elif args.command == "runs":
            _status(args)
        elif args.action == "run":
            _validate_run(args)
            from nf.book.execute import run_chapter

            overrides = {key: _parse_value(key, value) for key, value in args.parameter}
            if args.output is not None:
                Path(args.output).mkdir(parents=True, exist_ok=True)
            for name in execution_order(args.chapters or None):
                print(f"running chapter {name} (profile {args.profile})", file=sys.stderr)
                output = None if args.output is None else Path(args.output) / f"{name}.ipynb"
                path = run_chapter(name, args.profile, args.device, output=output, extra_parameters=overrides)
                print(f"wrote {path}", file=sys.stderr)
        else:
            from nf.book.build import build_book

            html = build_book(args.output)
            print(f"built {html / 'index.html'}", file=sys.stderr)
    except (ValueError, OSError, RuntimeError) as error:
        message = str(error).strip().splitlines()
        print(f"error: {message[-1] if message else type(error).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are in the cache; run the same command again to continue", file=sys.stderr)
        return 130
    return 0
