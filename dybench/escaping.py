"""Text from data (model, dataset and category names, column names of included CSVs, paths, titles)
shown as written in each language we render to: HTML, Markdown, rich markup and matplotlib text.

Every renderer passes such text through the function for its language, so a name can be anything
(`x"><img onerror=...>`, `[/]`, `$\\frac{a}$`) and still prints as those characters: it never runs
as script, opens a link, closes a tag or breaks a table or chart. Text we format ourselves from
numbers ("12.5", "[3.0, 40.0]") needs no escaping.
"""

from __future__ import annotations

import html
import re
from typing import Any

from rich.markup import escape as _rich_escape


def html_text(value: Any) -> str:
    """For HTML text and attribute values (quotes included, so it is safe inside `"..."`)."""
    return html.escape(str(value), quote=True)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]|])")
# `_` opens emphasis only at a word boundary (CommonMark): `event_sequence` stays as it is.
_MARKDOWN_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def markdown_text(value: Any) -> str:
    """For a cell or heading of a Markdown table: HTML is shown as text, and `|`, links, emphasis,
    code spans and line breaks neither split the cell nor turn into markup."""
    text = " ".join(str(value).splitlines())
    text = html.escape(text, quote=False)
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return _MARKDOWN_UNDERSCORE.sub(r"\\_", text)


def rich_text(value: Any) -> str:
    """For anything rich parses as markup: table cells, titles, captions, console.print text."""
    return _rich_escape(str(value))


def plot_text(value: Any) -> str:
    """For matplotlib text (titles, tick labels, legend entries): `$` is escaped, so mathtext
    (`$\\frac{a}$`) is drawn as its characters instead of parsed (a malformed formula would
    otherwise stop the chart being saved). The charts are drawn with usetex off, so no other
    character is special."""
    return str(value).replace("$", r"\$")
