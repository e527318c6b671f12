"""Command line: ``python -m nf book run [CHAPTER ...] [--profile P] [--device D] [-p NAME VALUE ...]``,
``python -m nf book build`` and ``python -m nf runs status CHAPTER [--profile P] [-p NAME VALUE ...]``.

Bad input gets one line naming the bad value and the allowed ones, and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys

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
    build = actions.add_parser("build", help="build the HTML book into _build/html from the executed chapters")
    build.add_argument("--output", default=None, help="folder to build into (default: the repository)")
    runs = commands.add_parser("runs", help="the runs behind a chapter")
    run_actions = runs.add_subparsers(dest="action", required=True)
    status = run_actions.add_parser("status", help="which of a chapter's runs are cached, running or missing")
    status.add_argument("chapter", metavar="CHAPTER", help=f"one of {', '.join(chapter_names())}")
    status.add_argument("--profile", default="report", help=f"{', '.join(PROFILE_NAMES)} (default: report)")
    status.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="as for book run"
    )
    return parser


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


def _validate_run(args: argparse.Namespace) -> None:
    from nf.runs.devices import resolve_device

    unknown = [name for name in args.chapters if name not in chapter_names()]
    if unknown:
        raise ValueError(f"unknown chapter {unknown[0]!r}; choose from {', '.join(chapter_names())}")
    if args.profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {args.profile!r}; choose one of {', '.join(PROFILE_NAMES)}")
    if args.device is not None:
        resolve_device(args.device)


def _parse_value(key: str, value: str):
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise ValueError(
            f"cannot read the value {value!r} of parameter {key!r} (YAML, e.g. 3, 1e-3, cpu, [2, 8])"
        ) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "runs":
            _status(args)
        elif args.action == "run":
            _validate_run(args)
            from nf.book.execute import run_chapter

            overrides = {key: _parse_value(key, value) for key, value in args.parameter}
            for name in execution_order(args.chapters or None):
                print(f"running chapter {name} (profile {args.profile})", file=sys.stderr)
                path = run_chapter(name, args.profile, args.device, extra_parameters=overrides)
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
