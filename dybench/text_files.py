"""Reading a user's text file: UTF-8 with or without a byte-order mark, and a one-line error that
names the file, line and byte when it is not UTF-8 (instead of a UnicodeDecodeError traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dybench.errors import DyBenchError

BOM = b"\xef\xbb\xbf"


def decode_text(data: bytes, source: str | Path, advice: str = "save the file as UTF-8") -> str:
    """`data` as text (a leading BOM dropped); `source` names it in the error, `advice` says what
    to do about it."""
    # The BOM is cut off here rather than by the "utf-8-sig" codec, whose error offsets would then
    # count from after it and name the wrong byte (and, at a line's start, the wrong line).
    body = data.removeprefix(BOM)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + len(data) - len(body)
        line = data[:offset].count(b"\n") + 1
        raise DyBenchError(
            f"{source}:{line}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); {advice}"
        ) from None


def read_text(path: str | Path) -> str:
    """The text of `path`, decoded as `decode_text` does."""
    return decode_text(Path(path).read_bytes(), path)


def json_lines(text: str, source: str | Path, advice: str = "fix or delete the line") -> list[tuple[int, Any]]:
    """The JSON value of every non-blank line of `text`, with its 1-based line number; a line that
    is not JSON is one error naming `source:line` and `advice`."""
    rows: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DyBenchError(f"{source}:{number}: not valid JSON ({exc.msg}); {advice}") from None
    return rows
