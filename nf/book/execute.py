"""Executing chapters: text source -> notebook (one way) -> papermill with a profile."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import jupytext
import nbformat

from nf.book.chapters import get_chapter
from nf.book.profiles import chapter_parameters

HIDDEN_TAG = "remove-cell"  # Jupyter Book drops the cell from the HTML


def notebook_from_source(name: str, output: Path | None = None) -> Path:
    """Write the unexecuted notebook of chapter ``name`` from its ``.nb.md`` source."""
    chapter = get_chapter(name)
    notebook = jupytext.read(chapter.source)
    notebook.metadata.pop("jupytext", None)  # the notebook is generated, never paired back
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    target = output or chapter.notebook
    nbformat.write(notebook, target)
    return target


def tidy_executed(path: Path, source: str, target: str) -> None:
    """Tag papermill's injected-parameters cell so the HTML does not show it, and record the notebook's paths as
    the chapter's ``source`` and ``target`` file names, not the scratch paths of the machine that ran it."""
    notebook = nbformat.read(path, as_version=4)
    if "papermill" in notebook.metadata:
        notebook.metadata["papermill"].update(input_path=source, output_path=target)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and HIDDEN_TAG not in tags:
            cell.metadata["tags"] = [*tags, HIDDEN_TAG]
    nbformat.write(notebook, path)


def apply_overrides(parameters: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` updated with ``overrides``; a dotted name ``mnist.updates`` sets one key of a dict parameter.

    Raises:
        ValueError: a dotted name whose dictionary or key does not exist.
    """
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in parameters.items()}
    for name, value in overrides.items():
        head, dot, key = name.partition(".")
        if not dot:
            merged[name] = value
        elif not isinstance(merged.get(head), dict):
            raise ValueError(f"unknown parameter {name!r}: {head!r} is not a dictionary parameter of this chapter")
        elif key not in merged[head]:
            raise ValueError(f"unknown parameter {name!r}; {head} has keys {', '.join(merged[head])}")
        else:
            merged[head][key] = value
    return merged


def run_chapter(
    name: str,
    profile: str = "report",
    device: str | None = None,
    output: Path | None = None,
    extra_parameters: dict[str, Any] | None = None,
    progress_bar: bool = True,
) -> Path:
    """Execute chapter ``name`` with papermill under ``profile``; return the executed notebook.

    Without ``output`` the chapter's own ``book/<name>.ipynb`` is replaced
    (what the book is built from); with it, the result goes there instead.
    The kernel runs in the folder of the result, so the files a chapter
    writes beside itself (the compute appendix's ``runs.csv``) go there too.
    The notebook is executed into a temporary file and moved into place only
    when every cell succeeded, so a failed or interrupted run leaves the
    previous notebook untouched.

    ``extra_parameters`` override the profile's (see ``apply_overrides``).

    Raises:
        ValueError: an unknown chapter, profile or parameter name.
        RuntimeError: a cell failed; the message names the cell and the error.
    """
    import papermill

    parameters = apply_overrides(chapter_parameters(name, profile, device), extra_parameters or {})
    target = Path(output) if output is not None else get_chapter(name).notebook
    handle, scratch = tempfile.mkstemp(prefix=f".{name}.", suffix=".ipynb", dir=target.parent)
    os.close(handle)
    scratch = Path(scratch)
    try:
        notebook_from_source(name, scratch)
        allowed = list(papermill.inspect_notebook(str(scratch)))
        unknown = sorted(set(parameters) - set(allowed))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} for chapter {name}; allowed: {', '.join(allowed)}")
        papermill.execute_notebook(
            str(scratch),
            str(scratch),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(target.parent),  # a chapter's own files (runs.csv) go beside its notebook
            progress_bar=progress_bar,
            request_save_on_cell_execute=False,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no kernel transport warnings on every run
        )
        tidy_executed(scratch, get_chapter(name).source.name, target.name)
        os.replace(scratch, target)
    except papermill.PapermillExecutionError as error:
        raise RuntimeError(f"chapter {name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}") from None
    finally:
        scratch.unlink(missing_ok=True)
    return target
