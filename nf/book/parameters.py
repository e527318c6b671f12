"""A chapter's parameters as papermill injects them, checked against the types of the ``report`` profile's values.

Papermill's ``-p NAME VALUE`` reads numbers, ``True``, ``False`` and ``None``
and passes anything else as text, so ``-p flow_lengths "[2, 8, 32]"`` gives
the chapter the string ``'[2, 8, 32]'``; ``-y "flow_lengths: [2, 8, 32]"``
(YAML) gives the list. Each chapter calls ``check_types`` right after its
``parameters`` cell, so a list or dictionary given as text stops the chapter
with one line naming the parameter and the form to use, before anything
iterates over the characters of the text.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from nf.book.profiles import chapter_parameters


def check_types(chapter: str, values: Mapping[str, Any]) -> None:
    """Each parameter of ``chapter`` in ``values`` (a notebook's ``globals()``) has the type of its ``report`` value.

    A list must be a list, a dictionary a dictionary (its keys checked one by one, those the report value has), a
    number a number (an integer or a float), ``True``/``False`` a bool and text text; a parameter the profile does
    not have (``results_dir``) or whose report value is ``None`` is not checked. List items are left to the
    chapter's own checks.

    Raises:
        ValueError: one line naming the parameter (``mnist.updates`` for a key of a dictionary), the type it must
            have, the value it got and the form that gives it.
    """
    for name, expected in chapter_parameters(chapter, "report").items():
        problem = _problem(chapter, name, values[name], expected) if name in values else None
        if problem:
            raise ValueError(problem)


def _kind(value: Any) -> str | None:
    """The kind of a report value that a parameter must share: list, dictionary, number, True or False, text."""
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a dictionary"
    if isinstance(value, str):
        return "text"
    return None


def _problem(chapter: str, name: str, value: Any, expected: Any) -> str | None:
    """What is wrong with ``value`` of parameter ``name`` given the report's ``expected`` (a dictionary's shared keys
    are checked too), or None."""
    kind = _kind(expected)
    if kind is not None and _kind(value) != kind:
        return _message(chapter, name, value, expected, kind)
    if kind == "a dictionary":
        for key in expected:  # in the report's order, so the first problem named is always the same one
            problem = _problem(chapter, f"{name}.{key}", value[key], expected[key]) if key in value else None
            if problem:
                return problem
    return None


def _message(chapter: str, name: str, value: Any, expected: Any, kind: str) -> str:
    """One line: what ``name`` must be, what it got, and the command-line form that gives the right type."""
    got = f"the text {value!r}" if isinstance(value, str) else repr(value)
    example = expected
    if isinstance(value, str):  # text that reads as the right kind is the reader's value, given the wrong way
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = None
        if _kind(parsed) == kind:
            example = parsed
    message = f"parameter {name} must be {kind}, got {got}"
    depth = name.count(".")
    if depth == 1:  # one key of a dictionary parameter: python -m nf book run sets it alone (-p NAME.KEY YAML)
        return f"{message}: give it as YAML, e.g. python -m nf book run {chapter} -p {name} {_quoted(_yaml(example))}"
    if depth > 1:
        return f"{message}: give it as YAML, e.g. {_yaml(example)}"
    if kind in ("a list", "a dictionary"):
        why = "papermill's -p passes text; " if isinstance(value, str) else ""
        return f"{message}: {why}give lists and dictionaries with -y, e.g. -y {_quoted(f'{name}: {_yaml(example)}')}"
    return f"{message}: e.g. -p {name} {_quoted(str(example))}"  # papermill's -p reads 3, 1e-3, True as Python


def _yaml(value: Any) -> str:
    """``value`` as one line of flow-style YAML (``[2, 8, 32]``, ``{updates: 60}``)."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False)
        .strip()
        .removesuffix("\n...")
        .strip()
    )


def _quoted(text: str) -> str:
    """``text`` as one shell word: as it is if it can be, else in double quotes (single quotes if it holds a double
    quote, ``$``, a backtick or a backslash)."""
    if text == shlex.quote(text):
        return text
    return shlex.quote(text) if any(c in text for c in '"$`\\') else f'"{text}"'
