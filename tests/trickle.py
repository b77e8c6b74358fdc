"""A misbehaving server's reply: the body one byte every 0.2 s, until `stop` is set or the client
hangs up (what a stalled or overloaded OpenAI-compatible server looks like to a client)."""

from __future__ import annotations

import threading
from typing import BinaryIO


def write_trickling(stream: BinaryIO, data: bytes, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(0.2):
            return
        try:
            stream.write(bytes([byte]))
            stream.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up
            return
