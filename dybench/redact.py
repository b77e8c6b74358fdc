"""Credentials never reach a file or the terminal: one function blanks them out of any text.

`redact` is applied to everything a run writes or prints that came from outside: model replies and
error messages in predictions.jsonl, the backend settings and command line in run.json, and the
one-line errors the command line prints. What it blanks out:

- the value of any environment variable whose name says it holds a credential (`*KEY*`,
  `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, ...), and any value registered with `add_secret`, wherever
  and however it appears (a server that echoes the request's headers back, say);
- the user:password part of a URL (`https://alice:pw@host` -> `https://[redacted]@host`);
- the value of an Authorization-like header, of a Bearer/Basic token, and of a query, JSON or
  `name=value` parameter whose name says key, token, secret or password.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "[redacted]"

MIN_SECRET_CHARS = 8
"""Shorter environment values ("1", "true") are settings, not credentials, and are left alone."""

_SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_registered: set[str] = set()

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@?#\"']+@")
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key)([\"']?\s*[:=]\s*[\"']?)"
    r"(?:(bearer|basic|token)\s+)?[^\s\"',;}&]+"
)
_SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_PARAMETER = re.compile(
    r"(?i)(\b(?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|id[_-]?token|token|"
    r"client[_-]?secret|secret|password|passwd|signature|sig)\b|(?<=[?&])key)"
    r"([\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}#]+"
)


def add_secret(value: str | None) -> None:
    """Blank `value` out of everything redacted from now on (e.g. an API key read from a variable
    whose name does not say it is one)."""
    if value and len(value) >= MIN_SECRET_CHARS:
        _registered.add(value)


def known_secrets() -> list[str]:
    """Registered values and credential-named environment values, longest first (so a secret that
    contains another is blanked whole)."""
    found = set(_registered)
    for name, value in os.environ.items():
        if _SECRET_ENV_NAME.search(name) and len(value) >= MIN_SECRET_CHARS:
            found.add(value)
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every credential it holds replaced by `[redacted]`."""
    if not text:
        return text
    for secret in known_secrets():
        text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{m[3] + ' ' if m[3] else ''}{REDACTED}", text)
    text = _SCHEME_TOKEN.sub(rf"\1 {REDACTED}", text)
    return _PARAMETER.sub(rf"\1\2{REDACTED}", text)


def redact_data(value: Any) -> Any:
    """`redact` applied to every string inside nested dicts, lists and tuples (settings, commands)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(item) for item in value)
    return value
