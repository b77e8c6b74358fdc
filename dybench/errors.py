"""The one exception type the CLI turns into a one-line message and a non-zero exit,
and the one way a pydantic validation error becomes part of such a message."""

from __future__ import annotations

from pydantic import ValidationError


class DyBenchError(Exception):
    """A problem the user can fix (bad input, missing file or weights): the message says how."""


def pydantic_message(exc: ValidationError, whole: str = "row") -> str:
    """The first validation problem as 'field x: message' (`whole` names a problem with no field)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"field {where}: {first['msg']}"
