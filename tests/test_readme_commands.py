"""Every command the README shows works as written, and leaves the repository as it was.

The commands are read from the README's ```bash blocks (continuation lines joined, comments dropped, ``&&`` parts
apart). Each is run as written from the top of a copy of the repository (the files git sees, made a git repository
of its own, so that what a command writes shows in its ``git status`` and edits made meanwhile in the real one do
not), with a tiny budget appended where it would otherwise train for long (the ``ci`` profile's values), its runs
in a temporary results folder (``NF_RESULTS_DIR``) and its outputs in a temporary folder. It must exit with 0, write
no notebook holding an error, and leave ``git status`` as it was. A command that cannot run here is listed in
``NOT_RUN`` with the reason; a command that is neither run nor listed fails
``test_every_readme_command_is_run_or_listed``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from nf.book.chapters import chapter_names
from nf.book.profiles import COMMON, chapter_parameters
from nf.experiments.data import DATA_ENV_VAR, data_root
from nf.runs.cache import RESULTS_ENV_VAR

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

PIP = "python -m pip install -r requirements.txt"
NOT_RUN = {  # command -> why this test does not run it
    PIP: "installs packages into the environment (from the network); the tests run in the environment it made",
    "python -m pytest tests book --nbval-lax --nbval-current-env": "the full suite, which holds this test",
}
SLURM_SETUP = (  # the README's single-node SLURM cluster; tests/test_slurm.py starts one the same way
    "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge",
    "install -d -o munge -g munge -m 755 /run/munge",
    "su -s /bin/sh munge -c /usr/sbin/munged",
    "mkdir -p /var/spool/slurmctld /var/spool/slurmd",
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "sinfo -h -o %T",
)
for command in SLURM_SETUP:
    NOT_RUN[command] = "installs or starts system daemons as root; tests/test_slurm.py starts such a cluster itself"
if not torch.cuda.is_available():
    NOT_RUN["python -m nf book run toy --profile paper --device cuda"] = "needs a CUDA GPU, and there is none here"

# python benchmarks/flow_update.py: one repetition of one update per timing, K = 2, 100 images, 2 toy fits
BENCHMARK_BUDGET = ["--lengths", "0", "2", "--repetitions", "1", "--updates", "1", "--eval-images", "100"]
BENCHMARK_BUDGET += ["--family-threads", "1", "--toy-fits", "4", "--toy-updates", "50"]
BENCHMARK_BUDGET += ["--peer-toy-lengths", "2", "--peer-toy-updates", "1"]
MNIST_CHAPTERS = {"mnist", "gaps", "nice", "conv"}  # chapters that train or read MNIST models


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks, one per ``&&`` part, each as ``shlex.join`` of its words."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                part, _, words = _split(words)
                if part:
                    commands.append(shlex.join(part))
    return commands


def _split(words: list[str]) -> tuple[list[str], str, list[str]]:
    """``words`` up to the first ``&&``, the separator, and the words after it."""
    if "&&" not in words:
        return words, "", []
    i = words.index("&&")
    return words[:i], "&&", words[i + 1 :]


def _option_values(words: list[str], flag: str, count: int = 1) -> list[list[str]]:
    """The ``count`` words after each ``flag`` in ``words``."""
    return [words[i + 1 : i + 1 + count] for i, word in enumerate(words) if word == flag]


def _ci_value(chapter: str, name: str):
    """The ``ci`` profile's value of parameter ``name`` (``mnist.updates``: one key of a dictionary) of ``chapter``."""
    value = chapter_parameters(chapter, "ci")
    for key in name.split("."):
        value = value[key]
    return value


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip().removesuffix("\n...").strip()


def _overrides_at_ci(chapter: str, words: list[str]) -> list[str]:
    """``-p NAME VALUE`` with the ``ci`` value for each ``-p NAME ...`` of ``words`` that the ``ci`` profile has, so
    that a command's own overrides train no longer than ``ci``."""
    overrides = []
    for name, _ in _option_values(words, "-p", 2):
        try:
            overrides += ["-p", name, _flow(_ci_value(chapter, name))]
        except KeyError:
            pass  # not a budget: where to read or write (data_root), kept as the command gives it
    return overrides


def budgeted(command: str, folder: Path) -> tuple[list[str], list[Path]] | None:
    """The command line to run for ``command`` (its words, then a tiny budget and temporary output paths under
    ``folder``) and the notebooks it writes; None for a command this test cannot run (it must be in ``NOT_RUN``)."""
    words = shlex.split(command)
    python = [sys.executable] if words[0] == "python" else None
    if command in NOT_RUN or words[0] not in ("python", "papermill"):
        return None
    if words[:3] == ["python", "-m", "nf"]:
        return _nf(python + words[1:], words[3:], folder)
    if words[0] == "papermill":
        return _papermill(words[1:], folder)
    if words[:3] == ["python", "-m", "pytest"] and ["-m", "not slow"] == words[-2:]:  # the quick loop
        return python + words[1:] + ["-q", "-p", "no:cacheprovider"], []
    if words[:2] == ["python", "benchmarks/flow_update.py"]:
        return python + words[1:] + BENCHMARK_BUDGET + ["--output", str(folder / "flow_update.txt")], []
    return None


def _nf(line: list[str], args: list[str], folder: Path) -> tuple[list[str], list[Path]] | None:
    """``python -m nf ...`` under the ``ci`` profile, its chapters written into ``folder``."""
    devices = [d for (d,) in _option_values(args, "--device")]
    if any(d.startswith("cuda") for d in devices) and args[:2] != ["runs", "train"] and not torch.cuda.is_available():
        return None
    if args[:2] == ["book", "run"]:
        chapters = [w for w in args[2:] if w in chapter_names()]
        budget = ["--profile", "ci", *(_overrides_at_ci(chapters[0], args) if chapters else [])]
        outputs = [folder / "chapters" / f"{name}.ipynb" for name in chapters or chapter_names()]
        return line + budget + ["--output", str(folder / "chapters")], outputs
    if args[:2] == ["book", "build"]:
        return line + ["--output", str(folder / "build")], []
    if args[:2] == ["runs", "status"]:
        return line, []  # reads the cache, trains nothing
    if args[:2] == ["runs", "train"] and _option_values(args, "--executor") == [["local"]]:
        return line + ["--profile", "ci", *_overrides_at_ci(args[2], args)], []
    if args[:2] == ["runs", "train"] and "--dry-run" in args:
        return line, []  # lists the jobs and the sbatch script, submits nothing
    return None


def _papermill(args: list[str], folder: Path) -> tuple[list[str], list[Path]] | None:
    """``papermill IN OUT ...`` with the output in ``folder`` and the ``ci`` profile's values appended: numbers and
    text with ``-p``, lists and dictionaries with ``-y`` (papermill's ``-p`` would pass them as text)."""
    if len(args) < 2 or not all(a.endswith(".ipynb") for a in args[:2]) or Path(args[0]).stem not in chapter_names():
        return None
    output = folder / Path(args[1]).name
    budget = []
    for name, value in chapter_parameters(Path(args[0]).stem, "ci").items():
        if name not in COMMON:
            budget += ["-y", f"{name}: {_flow(value)}"] if isinstance(value, (list, dict)) else ["-p", name, str(value)]
    return [sys.executable, "-m", "papermill", args[0], str(output), *args[2:], *budget, "--no-progress-bar"], [output]


def needs_mnist(command: str) -> bool:
    """Whether ``command`` trains MNIST models (it needs the MNIST files)."""
    words = shlex.split(command)
    if words[:5] == ["python", "-m", "nf", "book", "run"]:
        named = [w for w in words[5:] if w in chapter_names()]
        return not named or bool(MNIST_CHAPTERS & set(named))
    if words[:5] == ["python", "-m", "nf", "runs", "train"]:
        return words[5] in MNIST_CHAPTERS and "--dry-run" not in words
    return words[0] == "papermill" and Path(words[1]).stem in MNIST_CHAPTERS


COMMANDS = readme_commands()
RUN = [c for c in COMMANDS if c not in NOT_RUN]


def git(folder: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the repository's files that git sees (tracked, and untracked ones not ignored), committed into a
    git repository of its own: a command run in it can change no file of the real repository, and ``git status``
    there shows every file it changes."""
    copy = tmp_path_factory.mktemp("repository")
    for name in filter(None, git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "-m", "the repository")
    return copy


def test_every_readme_command_is_run_or_listed(tmp_path):
    assert COMMANDS, "no commands found in the README's bash blocks"
    neither = [c for c in COMMANDS if c not in NOT_RUN and budgeted(c, tmp_path) is None]
    assert not neither, f"README commands this test neither runs nor lists in NOT_RUN (with a reason): {neither}"
    stale = sorted(set(NOT_RUN) - set(COMMANDS))
    assert not stale, f"NOT_RUN lists commands the README no longer shows: {stale}"


def test_the_readme_gives_papermill_lists_and_dictionaries_with_y():
    for command in COMMANDS:
        words = shlex.split(command)
        if words[0] == "papermill":
            texts = [value for (_, value) in _option_values(words, "-p", 2) if value[:1] in "[{"]
            assert not texts, f"{command}: papermill's -p passes {texts} as text; give them with -y"


@pytest.mark.parametrize("command", sorted(NOT_RUN), ids=lambda c: c[:60])
def test_commands_not_run_here(command):
    pytest.skip(f"not run: {NOT_RUN[command]}")


@pytest.mark.slow  # trains tiny models, runs chapters, builds the book, runs the quick test loop
@pytest.mark.parametrize("command", RUN, ids=lambda c: c[:60])
def test_readme_command_runs_and_leaves_the_repository_as_it_was(command, tmp_path, ci_results, checkout, request):
    if needs_mnist(command):
        request.getfixturevalue("mnist_available")
    line, notebooks = budgeted(command, tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])]),  # its nf
        RESULTS_ENV_VAR: str(ci_results),
        DATA_ENV_VAR: str(data_root()),  # the real repository's data/ unless NF_DATA_DIR says otherwise
    }
    before = git(checkout, "status", "--porcelain", "--untracked-files=all")
    result = subprocess.run(line, cwd=checkout, env=env, capture_output=True, text=True, timeout=900)
    after = git(checkout, "status", "--porcelain", "--untracked-files=all")
    assert result.returncode == 0, f"{shlex.join(line)} exited with {result.returncode}:\n{result.stderr[-3000:]}"
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{path.name} holds an error: {errors[0].ename}: {errors[0].evalue}"
    assert after == before, f"{shlex.join(line)} changed the repository: git status\n{after}\nwas\n{before}"
