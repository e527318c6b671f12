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


def build_config(output_dir: Path) -> Path:
    """``_config.yml`` with a footer naming the commit the book is built from, written into ``output_dir``."""
    import yaml

    from nf.runs.cache import code_version

    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    version = code_version()
    footer = f"Built from commit <code>{version}</code> of this repository."
    if version.endswith("+modified"):
        footer += " The package had uncommitted changes."
    config.setdefault("html", {})["extra_footer"] = f"<p>{footer}</p>"
    path = output_dir / "_config.build.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_book(output_dir: Path | None = None) -> Path:
    """Build ``<output_dir>/_build/html`` (default: the repository's ``_build/html``); warnings are errors.

    The pages' footer names the commit they were built from (``build_config``).
    """
    install_local_mathjax()
    output_dir = Path(output_dir) if output_dir is not None else REPO_ROOT
    (output_dir / "_build").mkdir(parents=True, exist_ok=True)
    config = build_config(output_dir / "_build")
    command = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(REPO_ROOT),
        "--path-output",
        str(output_dir),
        "--config",
        str(config),
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
