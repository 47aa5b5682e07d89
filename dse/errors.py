"""One error type for bad user input, formatted so a user can act on it.

Every loader raises :class:`InputError` with the file, the place inside it (a field path,
a node, a layer), what is wrong, and optionally a hint. The CLI prints ``str(err)`` as
one line and exits non-zero; no traceback from deep inside reaches the user.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class InputError(ValueError):
    """Bad user input: ``<source>: <where>: <problem> (<hint>)``."""

    def __init__(self, source: str | Path | None, where: str | None, problem: str, hint: str | None = None):
        self.source = str(source) if source is not None else None
        self.where = where
        self.problem = problem
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = self.where or ""
        problem = self.problem
        if where and problem.startswith("= "):  # "field = value: expected ..." reads as one phrase
            where, problem = f"{where} {problem}", ""
        text = ": ".join(p for p in (self.source, where, problem) if p)
        if self.hint:
            text += f" ({self.hint})" if self.hint.startswith("did you mean") else f"; {self.hint}"
        return text

    def __str__(self) -> str:
        return self.message


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean ...?' hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def display_path(path: str | Path) -> str:
    """The path as the user would recognise it: relative to the working directory when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


class FieldProblem(ValueError):
    """A cross-field check inside a schema failed: ``field`` (relative path) and the message.

    Raised from pydantic validators; ``dse.yamlio`` prefixes the object's path to ``field``.
    A message starting with ``= value:`` is read as ``field = value: ...``.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(message)
