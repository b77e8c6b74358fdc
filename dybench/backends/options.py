"""Backend options: the settings a backend takes, declared once in its registry entry.

A `BackendOption` names one keyword of the backend's constructor with its type, default, help and
whether it changes the answers. Everything else derives from those declarations: parsing
`--backend-args k=v,k2=v2`, checking the values the dedicated flags (`--base-url`, ...) and the
Python API pass, the `--help` text, and which recorded settings stay out of a run's fingerprint
(the operational ones: how fast answers come, not what they are; see docs/architecture.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dybench.errors import DyBenchError

OPTION_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class BackendOption:
    """One keyword argument of a backend. `changes_answers`: whether two runs that differ only in
    it may answer differently (then it is part of the run's fingerprint)."""

    name: str
    type: type
    default: Any
    help: str
    changes_answers: bool
    flag: str | None = None
    """The dedicated command-line flag that sets it too (`--base-url`), if there is one."""
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"backend option {self.name}: type must be one of bool, int, float, str")

    @property
    def kind(self) -> str:
        """The expected value, as error messages and help show it."""
        if self.choices:
            return "|".join(self.choices)
        return {bool: "true|false", int: "an integer", float: "a number", str: "text"}[self.type]

    def parse(self, text: str) -> Any:
        """The value of `--backend-args NAME=TEXT`."""
        if self.type is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false"):
                raise DyBenchError(f"--backend-args {self.name}={text}: expected true or false")
            return lowered == "true"
        if self.type in (int, float):
            try:
                value = self.type(text.strip())
            except ValueError:
                raise DyBenchError(f"--backend-args {self.name}={text}: expected {self.kind}") from None
            return self.check(value, f"--backend-args {self.name}={text}")
        return self.check(text, f"--backend-args {self.name}={text}")

    def check(self, value: Any, where: str | None = None) -> Any:
        """`value` if it has this option's type (an int is a float too); else one line naming it."""
        where = where or f"backend option {self.name}={value!r}"
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise DyBenchError(f"{where}: expected {self.kind}")
        if self.type is float and not math.isfinite(value):
            raise DyBenchError(f"{where}: expected a finite number")
        if self.choices and value not in self.choices:
            raise DyBenchError(f"{where}: choose one of {', '.join(self.choices)}")
        return value


def split_backend_args(text: str) -> list[tuple[str, str]]:
    """`k=v,k2="a,b"` -> [("k", "v"), ("k2", "a,b")]. Commas and `=` inside single or double quotes
    are part of the value; the quotes themselves are dropped (as a shell would)."""
    pairs: list[tuple[str, str]] = []
    chars: list[str] = []
    equals: int | None = None
    quote: str | None = None

    def finish() -> None:
        piece = "".join(chars)
        if not piece.strip():
            if equals is not None:
                raise DyBenchError(f"--backend-args {text!r}: an empty KEY=VALUE pair")
            return
        if equals is None:
            raise DyBenchError(f"--backend-args {text!r}: {piece.strip()!r} is not KEY=VALUE")
        key = piece[:equals].strip()
        if not key:
            raise DyBenchError(f"--backend-args {text!r}: {piece.strip()!r} has no key before '='")
        pairs.append((key, piece[equals + 1 :]))

    for char in text:
        if quote is not None:
            if char == quote:
                quote = None
            else:
                chars.append(char)
        elif char in "\"'":
            quote = char
        elif char == ",":
            finish()
            chars, equals = [], None
        else:
            if char == "=" and equals is None:
                equals = len(chars)
            chars.append(char)
    if quote is not None:
        raise DyBenchError(f"--backend-args {text!r}: a {quote} quote is not closed")
    finish()
    return pairs


def accepted_list(options: Sequence[BackendOption]) -> str:
    return ", ".join(f"{option.name} ({option.kind})" for option in options) or "none"


def unknown_options_error(backend: str, unknown: Iterable[str], options: Sequence[BackendOption]) -> DyBenchError:
    return DyBenchError(f"backend {backend} does not take the option(s) {', '.join(sorted(unknown))} "
                        f"(it takes: {accepted_list(options)})")


def parse_backend_args(text: str | None, backend: str, options: Sequence[BackendOption]) -> dict[str, Any]:
    """The typed options of `--backend-args TEXT` for `backend`; an unknown key, a key given twice or
    a value of the wrong type is one line naming it."""
    if not text:
        return {}
    by_name = {option.name: option for option in options}
    pairs = split_backend_args(text)
    unknown = [key for key, _ in pairs if key not in by_name]
    if unknown:
        raise unknown_options_error(backend, unknown, options)
    parsed: dict[str, Any] = {}
    for key, value in pairs:
        if key in parsed:
            raise DyBenchError(f"--backend-args gives {key} twice: give it once")
        parsed[key] = by_name[key].parse(value)
    return parsed


def check_options(backend: str, options: Sequence[BackendOption], given: dict[str, Any],
                  from_flags: bool = False) -> dict[str, Any]:
    """`given` without its None values (not set), every key declared and every value typed. With
    `from_flags` a bad value is named by its flag (`--dtype x`)."""
    given = {key: value for key, value in given.items() if value is not None}
    by_name = {option.name: option for option in options}
    unknown = set(given) - set(by_name)
    if unknown:
        raise unknown_options_error(backend, unknown, options)
    return {key: by_name[key].check(value, f"{by_name[key].flag or '--' + key} {value}" if from_flags else None)
            for key, value in given.items()}


def combine_options(backend: str, options: Sequence[BackendOption], flags: dict[str, Any],
                    backend_args: str | None) -> dict[str, Any]:
    """The dedicated flags' values (None: not given) and `--backend-args`, checked; a key both set
    with different values is one line naming the two."""
    parsed = parse_backend_args(backend_args, backend, options)
    combined = check_options(backend, options, flags, from_flags=True)
    by_name = {option.name: option for option in options}
    for key, value in parsed.items():
        if key in combined and combined[key] != value:
            flag = by_name[key].flag or f"--{key}"
            raise DyBenchError(f"{flag} {combined[key]} and --backend-args {key}={value} disagree: give it once")
        combined[key] = value
    return combined


def operational_names(options: Sequence[BackendOption]) -> set[str]:
    """The options that do not change the answers (left out of the fingerprint)."""
    return {option.name for option in options if not option.changes_answers}


def options_help(backends: Iterable[tuple[str, Sequence[BackendOption]]]) -> str:
    """The options each backend takes, for `--help`; those that change the answers (part of the
    fingerprint) are marked with *."""
    return "; ".join(f"{name}: {', '.join(o.name + ('*' if o.changes_answers else '') for o in options) or 'none'}"
                     for name, options in backends)
