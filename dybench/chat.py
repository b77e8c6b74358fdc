"""`--system-prompt` and `--chat-template`: the chat settings a command line adds to a run.

The system prompt is recorded in run.json as written; a template file by its content hash (and,
outside the fingerprint, its path), so the same template under another name is the same run and
an edited template is a different one. The backends that build the model's conversation apply
them (hf and vllm render the template locally; openai sends it to a vLLM server).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dybench.errors import DyBenchError
from dybench.store import ChatSettings
from dybench.text_files import read_text


def read_chat_template(path: str | Path) -> str:
    """The text of a Jinja chat template file; a missing, empty or malformed file is one line."""
    path = Path(path)
    if not path.is_file():
        raise DyBenchError(f"--chat-template {path}: no such file")
    text = read_text(path)
    if not text.strip():
        raise DyBenchError(f"--chat-template {path}: the file is empty")
    try:
        import jinja2
    except ImportError:  # the template engine comes with transformers; without it a server checks
        return text
    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise DyBenchError(f"{path}:{exc.lineno}: not a Jinja template ({exc.message})") from None
    return text


def chat_settings(system_prompt: str | None, chat_template: str | Path | None) -> tuple[ChatSettings, str | None]:
    """What run.json records for these settings, and the template's text (None: none given)."""
    text = None if chat_template is None else read_chat_template(chat_template)
    settings = ChatSettings(
        system_prompt=system_prompt,
        chat_template_sha256=None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest(),
        chat_template_file=None if chat_template is None else str(Path(chat_template).resolve()),
    )
    return settings, text
