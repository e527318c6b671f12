"""The chapters of the book, in reading order.

Each chapter ``name`` has a text source ``book/<name>.nb.md`` (jupytext MyST
markdown, the source of truth) and an executed notebook ``book/<name>.ipynb``
made from it one way (text to notebook) and committed with its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BOOK_DIR = Path(__file__).resolve().parent.parent.parent / "book"


@dataclass(frozen=True)
class Chapter:
    name: str
    title: str
    summary: bool = False  # reads the runs that other chapters make (executed after them)

    @property
    def source(self) -> Path:
        return BOOK_DIR / f"{self.name}.nb.md"

    @property
    def notebook(self) -> Path:
        return BOOK_DIR / f"{self.name}.ipynb"


CHAPTERS: dict[str, Chapter] = {
    c.name: c
    for c in [
        Chapter("intro", "Introduction and results at a glance", summary=True),
        Chapter("theory", "Theory: change of variables, planar, radial and NICE flows"),
        Chapter("toy", "Toy 2-D densities (Fig. 3)"),
        Chapter("mnist", "MNIST with planar flows (Table 2, Fig. 4)"),
        Chapter("gaps", "Where the gap goes: approximation and amortisation"),
        Chapter("nice", "NICE posteriors"),
        Chapter("conv", "Invertible convolutional flows"),
        Chapter("scorecard", "Reproduction scorecard", summary=True),
        Chapter("compute", "Appendix: compute", summary=True),
    ]
}


def chapter_names() -> list[str]:
    """Chapter short names in reading order."""
    return list(CHAPTERS)


def execution_order(names: list[str] | None = None) -> list[str]:
    """``names`` (default: every chapter) in the order to execute them: the chapters that make runs first, in
    reading order, then the summaries (intro, scorecard, compute) that read those runs."""
    names = chapter_names() if names is None else names
    return sorted(names, key=lambda name: CHAPTERS[name].summary)


def get_chapter(name: str) -> Chapter:
    """The chapter called ``name``, or a ValueError listing the valid names."""
    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; choose from {', '.join(CHAPTERS)}")
    return CHAPTERS[name]
