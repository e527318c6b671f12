"""The book: its chapters, their parameter profiles, execution and build."""

from .chapters import CHAPTERS, chapter_names
from .profiles import PROFILES, chapter_parameters

__all__ = ["CHAPTERS", "PROFILES", "chapter_names", "chapter_parameters"]
