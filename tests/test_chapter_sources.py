"""The chapters' sources as a reader meets them: code that fits the page, figures with a number and alt text."""

from __future__ import annotations

import re

import pytest

from nf.book.chapters import chapter_names, get_chapter
from nf.report.tables import PAGE_WIDTH

CELL = re.compile(r"```\{code-cell\} ipython3\n((?::[^\n]*\n)*)(?:---\n(.*?)\n---\n)?\n?(.*?)```", re.S)


def cells(name: str) -> list[tuple[str, str]]:
    """``(options, code)`` of each code cell of a chapter's source."""
    return [(m.group(1) + (m.group(2) or ""), m.group(3)) for m in CELL.finditer(get_chapter(name).source.read_text())]


@pytest.mark.parametrize("name", chapter_names())
def test_code_fits_the_page(name):
    long = [line for _, code in cells(name) for line in code.splitlines() if len(line) > PAGE_WIDTH]
    assert not long, f"{name}: code lines wider than {PAGE_WIDTH} characters: {long}"


@pytest.mark.parametrize("name", chapter_names())
def test_every_plotting_cell_is_a_numbered_figure_with_alt_text(name):
    for options, code in cells(name):
        if re.search(r"\bplot_\w+\(|plt\.subplots\(", code) and "import" not in code:
            assert "figure:" in options and "name: fig-" in options and "alt:" in options, code[:200]


@pytest.mark.parametrize("name", chapter_names())
def test_an_executed_chapter_names_no_path_of_the_machine_that_ran_it(name):
    import nbformat

    notebook = nbformat.read(get_chapter(name).notebook, as_version=4)
    papermill = notebook.metadata.get("papermill", {})
    paths = [papermill.get("input_path"), papermill.get("output_path")]
    assert paths == [f"{name}.nb.md", f"{name}.ipynb"], paths


def test_an_executed_notebook_records_the_chapter_not_the_scratch_file(tmp_path):
    import nbformat

    from nf.book.execute import tidy_executed

    path = tmp_path / ".toy.abc123.ipynb"
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["injected-parameters"]})]
    )
    notebook.metadata["papermill"] = {"input_path": str(path), "output_path": str(path)}
    nbformat.write(notebook, path)
    tidy_executed(path, "toy.nb.md", "toy.ipynb")
    tidied = nbformat.read(path, as_version=4)
    assert tidied.metadata["papermill"]["input_path"] == "toy.nb.md"
    assert tidied.metadata["papermill"]["output_path"] == "toy.ipynb"
    assert tidied.cells[0].metadata["tags"] == ["injected-parameters", "remove-cell"]
