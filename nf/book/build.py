"""Building the HTML book with Jupyter Book 1.x from the executed notebooks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
MATHJAX_TARGET = REPO_ROOT / "_mathjax" / "mathjax"  # copied to <html>/mathjax (html_extra_path)


def install_local_mathjax() -> Path:
    """Copy MathJax 3 (from the ``django-static-mathjax`` package) into ``_mathjax/mathjax``.

    The book then renders its maths without reaching a CDN.
    """
    try:
        import mathjax
    except ImportError:
        raise RuntimeError(
            "MathJax is not installed: run `pip install -r requirements.txt` (package django-static-mathjax)"
        ) from None
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (source / "tex-chtml.js").exists():
        raise RuntimeError(f"the installed MathJax package has no es5/tex-chtml.js under {source}")
    if not (MATHJAX_TARGET / "tex-chtml.js").exists():
        shutil.rmtree(MATHJAX_TARGET, ignore_errors=True)
        shutil.copytree(source, MATHJAX_TARGET)
    return MATHJAX_TARGET


def build_book(output_dir: Path | None = None) -> Path:
    """Build ``<output_dir>/_build/html`` (default: the repository's ``_build/html``); warnings are errors."""
    install_local_mathjax()
    output_dir = Path(output_dir) if output_dir is not None else REPO_ROOT
    command = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(REPO_ROOT),
        "--path-output",
        str(output_dir),
        "--builder",
        "html",
        "--warningiserror",
        "--keep-going",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
        problems = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line] or log.splitlines()[-20:]
        raise RuntimeError("the book build failed: " + " | ".join(problems[:10]))
    html = output_dir / "_build" / "html"
    if not (html / "index.html").exists():
        raise RuntimeError(f"the book build wrote no {html / 'index.html'}:\n{result.stdout[-4000:]}")
    return html
