"""Options `dybench eval` and `dybench probe` both take for how the model is asked, declared once
so the two commands cannot drift apart."""

from __future__ import annotations

import typer

from dybench.backends.registry import backend_args_help

BACKEND_ARGS = typer.Option(None, "--backend-args", help=backend_args_help())
SYSTEM_PROMPT = typer.Option(None, "--system-prompt", help="A system message before every question "
                             "(hf, vllm, openai; part of the run's fingerprint).")
CHAT_TEMPLATE = typer.Option(None, "--chat-template", help="A Jinja chat template file replacing the checkpoint's: "
                             "rendered by hf and vllm, sent to a vLLM server by openai (which refuses other "
                             "servers); its content hash is part of the run's fingerprint.")
