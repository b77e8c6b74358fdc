"""Shared bits of the command line: the rich console and the one-line failure."""

from __future__ import annotations

from typing import NoReturn

from rich.console import Console
from dybench.escaping import rich_text
from dybench.redact import redact

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One red line on stderr and exit `code`. The message is redacted (no credential from a URL or a
    server's reply reaches the terminal) and escaped: a model name, category or path that contains
    rich markup (`[/]`) is printed as written, not interpreted."""
    err_console.print(f"[bold red]error:[/] {rich_text(redact(message))}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
