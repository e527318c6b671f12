"""The built HTML book, opened in headless Chromium as a reader would: tables, figures, maths, code, links.

Needs Debian's ``chromium`` (installed by ``.ci/run``); outside CI the test is
skipped when it is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from nf.book.build import build_book
from nf.book.chapters import chapter_names

pytestmark = pytest.mark.slow  # subprocesses, chapter runs or a browser

CHROMIUM = shutil.which("chromium")
READING_VIEWPORT = {"width": 1400, "height": 2000}  # the window the book is read and checked in
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    return build_book(tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=READING_VIEWPORT
        )
        yield context
        context.close()


PAGE_REPORT = """() => ({
    images: Array.from(document.querySelectorAll('article img'))
      .map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0, alt: i.getAttribute('alt') || '',
                  number: i.closest('figure')?.querySelector('.caption-number')?.textContent || '',
                  // shown width / height over the file's: 1 unless the page squeezes the figure out of shape
                  aspect: (i.clientWidth / i.clientHeight) / (i.naturalWidth / i.naturalHeight)})),
    overflowing: Array.from(document.querySelectorAll('article pre'))
      .filter(p => p.scrollWidth > p.clientWidth + 1)  // hidden inputs too: a reader may expand them
      .map(p => p.textContent.split('\\n').find(line => line.length > 80) || p.textContent.slice(0, 80)),
    mathSource: document.querySelectorAll('article .math').length,
    mathRendered: document.querySelectorAll('article mjx-container').length,
    mathErrors: document.querySelectorAll('article mjx-merror').length,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    tables: document.querySelectorAll('article table').length,
    prose: (() => {  // the text a reader sees outside code, rendered maths and scripts
        const article = document.querySelector('article').cloneNode(true);
        article.querySelectorAll('pre, code, mjx-container, script, style').forEach(e => e.remove());
        return article.textContent;
    })(),
})"""


HASH = re.compile(r"[0-9a-f]{32}|\.png$")  # the file name myst-nb uses when a figure has no alt text


def markdown_tables(name: str) -> int:
    """Markdown tables in a chapter's executed notebook (outputs and text cells), counted by their ``|---|`` rows."""
    import json

    from nf.book.chapters import get_chapter

    count = 0
    for cell in json.loads(get_chapter(name).notebook.read_text())["cells"]:
        texts = (
            ["".join(cell["source"])]
            if cell["cell_type"] == "markdown"
            else ["".join(output.get("data", {}).get("text/markdown", [])) for output in cell.get("outputs", [])]
        )
        count += sum(len(re.findall(r"^\|(?:-+\|)+$", text, re.M)) for text in texts)
    return count


@pytest.mark.parametrize("name", chapter_names())
def test_chapter_page_renders(html, browser, name):
    page_path = html / "book" / f"{name}.html"
    assert page_path.exists()
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
    page.evaluate("() => MathJax.startup.promise")
    report = page.evaluate(PAGE_REPORT)
    page.close()

    assert all(image["ok"] for image in report["images"]), report["images"]
    unexplained = [image["src"] for image in report["images"] if not image["alt"] or HASH.search(image["alt"])]
    assert not unexplained, f"figures without alt text: {unexplained}"
    unnumbered = [image["alt"] for image in report["images"] if not image["number"].startswith("Figure ")]
    assert not unnumbered, f"figures without a number and caption: {unnumbered}"
    distorted = [image["alt"] for image in report["images"] if abs(image["aspect"] - 1) > 0.02]
    assert not distorted, f"figures shown out of shape: {distorted}"
    assert not report["overflowing"], f"code wider than the page: {report['overflowing']}"
    assert report["tables"] >= markdown_tables(name), "a Markdown table rendered as text"
    assert "|---|" not in report["prose"], "a Markdown table rendered as text"
    assert "$" not in report["prose"], "maths rendered as text with its $ signs"
    assert report["mathSource"] > 0, "every chapter states some maths"
    assert report["mathRendered"] >= report["mathSource"] and report["mathErrors"] == 0
    local_failures = [url for url in failed if url.startswith("file:")]
    assert not local_failures
    for link in report["links"]:
        url = urlparse(link)
        if url.scheme == "file":
            assert Path(unquote(url.path)).exists(), f"broken link {link} on {name}"


def test_figures_are_present_where_chapters_plot(html):
    for name in ["theory", "toy", "mnist", "nice", "conv"]:
        assert "<img" in (html / "book" / f"{name}.html").read_text()


def test_injected_parameters_are_hidden_and_notebook_downloadable(html):
    page = (html / "book" / "toy.html").read_text()
    assert "injected-parameters" not in page
    assert (html / "_sources" / "book" / "toy.ipynb").exists()


def test_pages_name_the_commit_they_were_built_from(html):
    from nf.runs.cache import code_version

    assert f"Built from commit <code>{code_version()}</code>" in (html / "book" / "mnist.html").read_text()
