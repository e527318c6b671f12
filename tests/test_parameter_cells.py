"""Every chapter's parameters cell says what its report profile says, so the committed book is the report profile."""

from __future__ import annotations

import re

import pytest

from nf.book.chapters import chapter_names, get_chapter
from nf.book.profiles import chapter_parameters

WHERE = {"results_dir", "data_root"}  # where to read and write, not what to compute: not in the profiles


def parameters_cell(name: str) -> dict:
    source = get_chapter(name).source.read_text()
    match = re.search(r"```\{code-cell\} ipython3\n:tags: \[parameters[^]]*\]\n\n(.*?)```", source, re.S)
    assert match, f"{name} has no parameters cell"
    values: dict = {}
    exec(match.group(1), {}, values)
    return values


@pytest.mark.parametrize("name", chapter_names())
def test_parameters_cell_equals_the_report_profile(name):
    cell = parameters_cell(name)
    assert {k: v for k, v in cell.items() if k not in WHERE} == chapter_parameters(name, "report")
