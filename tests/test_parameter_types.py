"""Chapter parameters given on the command line: papermill's ``-p`` (numbers, text) and ``-y`` (lists and
dictionaries), and ``python -m nf book run -p NAME.KEY``; a list or dictionary given as text stops the chapter with
one line naming the parameter and the form to use (``nf.book.parameters.check_types``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat
import pytest
import yaml

from nf.book.chapters import chapter_names, get_chapter
from nf.book.parameters import check_types
from nf.book.profiles import PROFILE_NAMES, chapter_parameters
from nf.runs.cache import RESULTS_ENV_VAR

CELL = 'from nf.book.parameters import check_types; check_types("{name}", globals())'


# --- the check ---------------------------------------------------------------------------------------------------


def test_text_where_a_list_is_expected():
    with pytest.raises(ValueError) as error:
        check_types("toy", {**chapter_parameters("toy"), "flow_lengths": "[2, 8, 32]"})
    assert str(error.value) == (
        "parameter flow_lengths must be a list, got the text '[2, 8, 32]': papermill's -p passes text; "
        'give lists and dictionaries with -y, e.g. -y "flow_lengths: [2, 8, 32]"'
    )
    with pytest.raises(ValueError) as error:
        check_types("toy", {"energies": '["U1"]'})
    assert str(error.value).startswith("""parameter energies must be a list, got the text '["U1"]'""")
    assert str(error.value).endswith('e.g. -y "energies: [U1]"')


def test_text_where_a_dictionary_is_expected():
    with pytest.raises(ValueError) as error:
        check_types("nice", {"mnist": "{updates: 60}"})
    assert str(error.value) == (
        "parameter mnist must be a dictionary, got the text '{updates: 60}': papermill's -p passes text; "
        'give lists and dictionaries with -y, e.g. -y "mnist: {updates: 60}"'
    )


def test_a_key_of_a_dictionary_is_checked_by_name():
    mnist = chapter_parameters("nice", "ci")["mnist"]
    with pytest.raises(ValueError) as error:
        check_types("nice", {"mnist": {**mnist, "updates": "many"}})
    assert str(error.value) == (
        "parameter mnist.updates must be a number, got the text 'many': give it as YAML, "
        "e.g. python -m nf book run nice -p mnist.updates 10000"
    )
    with pytest.raises(ValueError, match=r"^parameter toy\.energies must be a list, got the text 'U1'"):
        check_types("conv", {"toy": {"energies": "U1"}})
    with pytest.raises(ValueError) as error:
        check_types("mnist", {"study": {"recipes": {"Adam": {"updates": "60"}}}})
    assert str(error.value) == (
        "parameter study.recipes.Adam.updates must be a number, got the text '60': give it as YAML, e.g. 60"
    )


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("flow_lengths", 3, "parameter flow_lengths must be a list, got 3: give lists and dictionaries with -y"),
        ("updates", "many", "parameter updates must be a number, got the text 'many': e.g. -p updates 4000"),
        ("updates", True, "parameter updates must be a number, got True"),
        ("device", 0, "parameter device must be text, got 0: e.g. -p device cpu"),
    ],
)
def test_other_wrong_types_are_named(name, value, message):
    with pytest.raises(ValueError) as error:
        check_types("toy", {name: value})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("name", chapter_names())
def test_every_profile_passes(name, profile):
    check_types(name, chapter_parameters(name, profile))


def test_right_values_pass():
    check_types("toy", {"flow_lengths": [2], "learning_rate": 1, "updates": 10.0, "results_dir": None, "seed": 3})
    check_types("nice", {"mnist": {"models": [["none", 0]], "updates": 60, "unknown": "kept"}, "toy": {}})
    check_types("mnist", {"train": False, "study": {"recipes": {"SGD": {"updates": 5}}}})


@pytest.mark.parametrize(
    "text,value",
    [("1e-3", 0.001), ("-2E+4", -20000.0), ("1.5", 1.5), ("3", 3), ("cpu", "cpu"), ("[1e-3, 2]", [0.001, 2])],
)
def test_nf_reads_parameter_values_as_yaml_with_numbers_like_1e_3(text, value):
    from nf.book.cli import _parse_value

    assert _parse_value("name", text) == value  # PyYAML alone reads 1e-3 as text


@pytest.mark.parametrize("name", chapter_names())
def test_every_chapter_checks_its_parameters_right_after_its_parameters_cell(name):
    source = get_chapter(name).source.read_text()
    line = CELL.format(name=name)
    if name == "mnist" and line not in source:
        pytest.skip("the MNIST chapter is edited elsewhere: it gets the cell there")
    parameters_cell = r"```\{code-cell\} ipython3\n:tags: \[parameters[^]]*\]\n\n.*?```\n\n"
    check_cell = r"```\{code-cell\} ipython3\n:tags: \[remove-cell\]\n\n" + re.escape(line) + "\n```"
    assert re.search(parameters_cell + check_cell, source, re.S), f"{name}: no cell {line!r} after its parameters"


# --- papermill and python -m nf book run, under the ci budgets ------------------------------------------------------


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip().removesuffix("\n...").strip()


def papermill_arguments(values: dict) -> list[str]:
    """``values`` as papermill takes them: numbers, text and bools with ``-p``, lists and dictionaries with ``-y``."""
    arguments = []
    for name, value in values.items():
        arguments += ["-y", f"{name}: {_flow(value)}"] if isinstance(value, (list, dict)) else ["-p", name, str(value)]
    return arguments


# one override of each kind a chapter's parameters have, on top of its ci budget; subsets of the ci runs where a
# change would otherwise train new runs
OVERRIDES = {
    "intro": {"seed": 0, "device": "cpu"},
    "theory": {"grid_cells": 60},
    "toy": {"energies": ["U1"], "workers": 1, "optimizer": "adam"},
    "mnist": {"ladder": {"seeds": [0]}, "workers": 1, "train": True},
    "gaps": {"report_models": [["none", 0]], "images": 10, "fit": {"max_steps": 10}, "train": True},
    "nice": {"toy": {"energies": ["U1"]}, "seed": 0},
    "conv": {"toy": {"energies": ["U1"]}, "seed": 0},
    "scorecard": {"seed": 0, "device": "cpu"},
    "compute": {"seed": 0, "device": "cpu"},
}


def with_overrides(name: str) -> dict:
    """The chapter's ci parameters with ``OVERRIDES`` (a dictionary's keys replaced one by one)."""
    values = chapter_parameters(name, "ci")
    for key, value in OVERRIDES[name].items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    return values


def injected(path) -> dict:
    """The values papermill injected into the executed notebook at ``path``."""
    notebook = nbformat.read(path, as_version=4)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    cells = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    values: dict = {}
    exec(cells[0].source, {}, values)
    return values


def run(command: list[str], folder, results, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, RESULTS_ENV_VAR: str(results)}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900, **kwargs)


@pytest.mark.slow  # runs chapters
@pytest.mark.parametrize("name", chapter_names())
def test_papermill_overrides_of_each_type(name, tmp_path, ci_results, request):
    if name in ("mnist", "gaps", "nice", "conv"):
        request.getfixturevalue("mnist_available")
    values = with_overrides(name)
    kinds = {type(v) for v in chapter_parameters(name, "report").values()}
    assert {type(v) for v in values.values()} >= kinds  # every kind of the chapter's parameters is given
    output = tmp_path / f"{name}.ipynb"
    command = [sys.executable, "-m", "papermill", str(get_chapter(name).notebook), str(output)]
    result = run([*command, *papermill_arguments(values), "--no-progress-bar"], tmp_path, ci_results)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {k: v for k, v in injected(output).items() if k in values} == values


@pytest.mark.slow  # runs chapters
@pytest.mark.parametrize("name", ["nice", "conv"])
def test_one_key_of_a_dictionary_parameter_with_nf_book_run(name, tmp_path, ci_results, mnist_available):
    command = [sys.executable, "-m", "nf", "book", "run", name, "--profile", "ci", "--output", str(tmp_path)]
    overrides = ["-p", "mnist.updates", "60", "-p", "toy.energies", "[U1]", "-p", "toy.learning_rate", "5e-3"]
    result = run([*command, *overrides], tmp_path, ci_results)
    assert result.returncode == 0, result.stderr[-3000:]
    values = injected(tmp_path / f"{name}.ipynb")
    assert values["mnist"]["updates"] == 60 and values["toy"]["energies"] == ["U1"]
    assert values["toy"]["learning_rate"] == 5e-3


@pytest.mark.slow  # runs chapters
@pytest.mark.parametrize(
    "name,arguments,message",
    [
        (
            "toy",
            ["-p", "updates", "20000", "-p", "flow_lengths", "[2, 8, 32]"],
            "ValueError: parameter flow_lengths must be a list, got the text '[2, 8, 32]': papermill's -p passes "
            'text; give lists and dictionaries with -y, e.g. -y "flow_lengths: [2, 8, 32]"',
        ),
        ("toy", ["-p", "energies", '["U1"]'], "ValueError: parameter energies must be a list, got the text '[\"U1\"]'"),
        ("nice", ["-p", "mnist", "{updates: 60}"], "ValueError: parameter mnist must be a dictionary, got the text"),
    ],
)
def test_papermill_text_for_a_list_or_dictionary_fails_in_one_line(name, arguments, message, tmp_path, ci_results):
    command = [sys.executable, "-m", "papermill", str(get_chapter(name).notebook), str(tmp_path / "out.ipynb")]
    result = run([*command, *arguments, "--no-progress-bar"], tmp_path, ci_results)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(message), last
    assert "got '['" not in result.stderr and "unknown energy '['" not in result.stderr


@pytest.mark.slow  # runs a chapter
def test_nf_book_run_names_a_dictionary_key_of_the_wrong_type(tmp_path, ci_results):
    command = [sys.executable, "-m", "nf", "book", "run", "conv", "--profile", "ci", "--output", str(tmp_path)]
    result = run([*command, "-p", "mnist.updates", "many"], tmp_path, ci_results)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: chapter conv failed in cell \d+: ValueError: parameter mnist\.updates must be a number, got the "
        r"text 'many': give it as YAML, e.g\. python -m nf book run conv -p mnist\.updates 10000",
        last,
    ), last
