"""Every chapter runs end to end under the ``ci`` profile, into a temporary folder."""

from __future__ import annotations

import nbformat
import pytest

from nf.book.chapters import chapter_names
from nf.book.execute import run_chapter
from nf.runs.cache import RESULTS_ENV_VAR

pytestmark = pytest.mark.slow  # subprocesses, chapter runs or a browser


@pytest.mark.parametrize("name", chapter_names())
def test_chapter_runs_under_ci_profile(name, tmp_path, monkeypatch, ci_results):
    monkeypatch.setenv(RESULTS_ENV_VAR, str(ci_results))  # never touch the committed cache; shared with later tests
    output = run_chapter(name, profile="ci", output=tmp_path / f"{name}.ipynb", progress_bar=False)
    notebook = nbformat.read(output, as_version=4)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
