"""Any OpenAI-compatible chat endpoint: `vllm serve`, SGLang, hosted APIs.

The sampled frames are re-encoded (losslessly) as a small mp4 at the sampled frame rate and sent
as a base64 data URL, so the server sees exactly the frames the other backends see, at the right
timestamps. A vLLM server must then be told to keep every frame it gets, or its video loader
resamples to 2 fps: start it with `--media-io-kwargs '{"video": {"fps": 30}}'
--mm-processor-kwargs '{"do_sample_frames": false}'`, or start it with `--trust-request-mm-kwargs`
and pass `send_mm_kwargs=True` (then each request carries these settings and the pixel budget). With
`video_transport="file"` the original file is sent as a file:// URL instead (for
a local server started with `--allowed-local-media-path`); the server then samples it itself. On
the command line these are `--backend-args send_mm_kwargs=true,video_transport=file,served_model_name=NAME`.
A `--chat-template` goes with each request as vLLM's `chat_template` field (start the server with
`--trust-request-chat-template`); a server that is not vLLM is refused, since it would ignore it.

Requests run concurrently on an asyncio event loop (`concurrency` in flight); 429, 5xx, timeouts
and dropped connections are retried with exponential backoff, or after the server's Retry-After
(clamped to 0..60 s; unreadable values are ignored). `timeout_s` is a deadline for the whole
request, all attempts and waits included: a server that trickles its reply a byte at a time, or
never answers, cannot hold an item longer. On Ctrl-C or SIGTERM the requests in flight are
cancelled at once and the answers that already arrived go back to the eval loop (BatchInterrupted).
The API key is read from the environment variable named by `api_key_env` and is never stored or
described; credentials in the base URL (user:password@, `?api_key=`) are redacted wherever it is
shown. Query parameters of the base URL (`?api-version=...`) are sent with every request.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import email.utils
import math
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Coroutine

import httpx

from dybench.backends.base import BatchInterrupted, Request, Response, Sampling
from dybench.backends.video_inputs import chat_messages, processor_kwargs
from dybench.errors import DyBenchError
from dybench.redact import add_secret, redact
from dybench.video import SampledClip, write_video

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_TIMEOUT_S = 600.0
"""Deadline per request, all retries included: generous for a slow reasoning model on a busy server,
finite so that a server that stops answering cannot stall a run."""
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 60.0
TRANSPORTS = ("base64", "file")
KEEP_ALL_FPS = 30
"""A loader rate at or above the clip's own keeps every frame (vLLM's Qwen3-VL loader caps at 30)."""


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait (a number, or an HTTP date), clamped to
    0..MAX_RETRY_AFTER_S; None when there is none or it cannot be read (negative means now)."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        seconds = (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def content_text(content: Any) -> str | None:
    """The text of a reply's `message.content`: a string; a list of content parts, whose text parts
    are joined; "" for none. None when it is anything else (a number, an object): not text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        texts = [part.get("text") for part in content if part.get("type", "text") in ("text", "output_text")]
        if all(isinstance(text, str) for text in texts):
            return "".join(texts)
    return None


def run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run `coroutine` to its end. Called from code that already runs an event loop (a notebook),
    it runs on a thread of its own, since one thread cannot run two loops."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="openai") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def encode_clip_mp4(clip: SampledClip) -> bytes:
    """The sampled frames as a lossless mp4 at the sampled rate (timestamps survive the trip)."""
    frames = clip.frames
    # H.264 wants even sizes; drop a last row/column rather than invent pixels.
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    with tempfile.TemporaryDirectory(prefix="dybench-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        write_video(path, frames, fps=max(clip.sampled_fps, 0.1))
        return path.read_bytes()


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        spec: Any,
        base_url: str | None = None,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 5,
        video_transport: str = "base64",
        served_model_name: str | None = None,
        backoff_s: float = 1.0,
        send_mm_kwargs: bool = False,
    ):
        if video_transport not in TRANSPORTS:
            raise DyBenchError(f"video_transport {video_transport!r}: choose one of {', '.join(TRANSPORTS)}")
        if concurrency < 1:
            raise DyBenchError("--concurrency must be at least 1")
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise DyBenchError(f"--request-timeout {timeout_s}: give a positive number of seconds")
        self.spec = spec
        url = httpx.URL((base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"))
        # httpx would glue a query onto every path ("/v1?k=v" + "/models"); send it as parameters.
        self.params = dict(url.params)
        self.endpoint = str(url.copy_with(query=None, fragment=None)).rstrip("/")
        self.base_url = redact(str(url))
        """The server as shown in run.json and messages: credentials redacted."""
        self.api_key_env = api_key_env or DEFAULT_API_KEY_ENV
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.video_transport = video_transport
        self.send_mm_kwargs = bool(send_mm_kwargs)
        key = os.environ.get(self.api_key_env)
        add_secret(key)  # a server may echo it back; it never reaches a file or the terminal
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=self.endpoint, params=self.params, headers=self.headers,
                                   timeout=min(self.timeout_s, 10.0))
        self.model, self.server_is_vllm = self._check_server(served_model_name)
        self.chat_template = getattr(spec, "chat_template", None)
        if self.chat_template and not self.server_is_vllm:
            # Only vLLM's server renders a template sent with the request; others would ignore it.
            self.client.close()
            raise DyBenchError(f"--chat-template: {self.base_url} is not a vLLM server (its /models names no vllm "
                               "owner), and only vLLM applies a template sent with each request: start the server "
                               "with the template instead and drop --chat-template here")

    # --- startup --------------------------------------------------------------------------------

    def _check_server(self, served_model_name: str | None) -> tuple[str, bool]:
        """Fail now, in one line, if the server is unreachable, refuses the key or lacks the model."""
        try:
            reply = self.client.get("/models")
        except httpx.HTTPError as exc:
            self.client.close()
            raise DyBenchError(
                f"cannot reach an OpenAI-compatible server at {self.base_url} ({type(exc).__name__}): "
                "start it, or pass --base-url http://HOST:PORT/v1"
            ) from None
        if reply.status_code in (401, 403):
            self.client.close()
            raise DyBenchError(f"{self.base_url} refused the request (HTTP {reply.status_code}): "
                               f"put a valid API key in the environment variable {self.api_key_env}")
        if reply.status_code != 200:
            self.client.close()
            raise DyBenchError(f"{redact(self.endpoint)}/models answered HTTP {reply.status_code}: "
                               "is it an OpenAI-compatible server?")
        try:
            entries = reply.json().get("data", [])
        except ValueError:
            entries = []
        served = [entry.get("id") for entry in entries if isinstance(entry, dict)]
        is_vllm = any(entry.get("owned_by") == "vllm" for entry in entries if isinstance(entry, dict))
        if served_model_name:
            if served and served_model_name not in served:
                self.client.close()
                raise DyBenchError(f"{self.base_url} does not serve {served_model_name!r} (it serves: {', '.join(served)})")
            return served_model_name, is_vllm
        for candidate in (self.spec.hub_id, self.spec.path, self.spec.name):
            if candidate and candidate in served:
                return candidate, is_vllm
        if len(served) == 1:
            return served[0], is_vllm
        if not served:
            # Some hosted APIs do not list models: send the name as given.
            return self.spec.hub_id or self.spec.name, is_vllm
        self.client.close()
        raise DyBenchError(f"{self.base_url} serves {', '.join(served)}; none is {self.spec.name!r}: "
                           "pass the served name with --backend-args served_model_name=NAME")

    @property
    def sends_video_file(self) -> bool:
        """With the `file` transport the server reads the video and samples frames itself."""
        return self.video_transport == "file"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "base_url": self.base_url,
            "served_model": self.model,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "backoff_s": self.backoff_s,
            "video_transport": self.video_transport,
            "server_is_vllm": self.server_is_vllm,
            "send_mm_kwargs": self.send_mm_kwargs,
            "outputs_are_noise": bool(getattr(self.spec, "outputs_are_noise", False)),
        }

    def close(self) -> None:
        self.client.close()

    def async_client(self) -> httpx.AsyncClient:
        """A client for one batch (an asyncio client belongs to the event loop it was made on)."""
        return httpx.AsyncClient(base_url=self.endpoint, params=self.params, headers=self.headers,
                                 timeout=self.timeout_s, limits=httpx.Limits(max_connections=self.concurrency))

    # --- requests -------------------------------------------------------------------------------

    def video_part(self, request: Request) -> dict[str, Any]:
        if self.video_transport == "file":
            return {"type": "video_url", "video_url": {"url": Path(request.video_path).resolve().as_uri()}}
        data = base64.b64encode(encode_clip_mp4(request.clip)).decode("ascii")
        return {"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{data}"}}

    def payload(self, request: Request, sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(self.spec, request.prompt, video=self.video_part(request)),
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        }
        if self.send_mm_kwargs and self.video_transport == "base64":
            # The frames are already sampled: tell vLLM's loader and processor to keep them all
            # (the server must allow it: --trust-request-mm-kwargs).
            body["mm_processor_kwargs"] = processor_kwargs(self.spec, len(request.clip.frames))
            body["media_io_kwargs"] = {"video": {"num_frames": -1, "fps": max(KEEP_ALL_FPS, math.ceil(2 * request.clip.sampled_fps))}}
        if self.chat_template:
            body["chat_template"] = self.chat_template  # vLLM: needs --trust-request-chat-template
        return body

    def _delay(self, attempt: int, reply: httpx.Response | None) -> tuple[float, str]:
        """Seconds to wait before the next attempt, and why (for the message if it is too long)."""
        header = reply.headers.get("retry-after") if reply is not None else None
        seconds = retry_after_seconds(header)
        if seconds is not None:
            return seconds, f"the server asks to wait {seconds:g} s (Retry-After: {header})"
        seconds = min(30.0, self.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
        return seconds, f"the next retry is in {seconds:.1f} s"

    def read_reply(self, reply: httpx.Response, attempt: int, start: float) -> Response:
        """A 200 reply as a Response; a body that is not a chat completion, or content that is not
        text, is an item error (the item counts as wrong), never a crash."""
        try:
            answer = reply.json()
            content = answer["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return Response(text=None, error=f"openai: malformed reply: {redact(reply.text[:300])}")
        text = content_text(content)
        if text is None:
            return Response(text=None, error=f"openai: the reply's content is {type(content).__name__}, not text: "
                                             f"{redact(repr(content)[:200])}")
        extra: dict[str, Any] = {"attempts": attempt + 1} if attempt else {}
        usage = answer.get("usage") if isinstance(answer, dict) else None
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
            extra["prompt_tokens"] = usage["prompt_tokens"]
        return Response(text=text, latency_s=time.monotonic() - start, extra=extra)

    async def ask(self, client: httpx.AsyncClient, request: Request, sampling: Sampling) -> Response:
        """One chat completion, retried on rate limits, server errors and timeouts, within the deadline."""
        start = time.monotonic()
        deadline = start + self.timeout_s
        try:
            body = await asyncio.to_thread(self.payload, request, sampling)  # encoding the clip takes a while
        except Exception as exc:
            return Response(text=None, error=f"openai: cannot prepare the request ({type(exc).__name__}: {exc})")
        problem = ""
        for attempt in range(self.max_retries + 1):
            reply = None
            try:
                reply = await asyncio.wait_for(client.post("/chat/completions", json=body),
                                               timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return Response(text=None, latency_s=time.monotonic() - start,
                                error=f"openai: no complete reply within the request deadline of {self.timeout_s:g} s "
                                      f"(attempt {attempt + 1}; raise it with --request-timeout)")
            except httpx.HTTPError as exc:  # timeouts, refused or dropped connections
                problem = type(exc).__name__
            else:
                if reply.status_code == 200:
                    return self.read_reply(reply, attempt, start)
                problem = f"HTTP {reply.status_code}: {redact(reply.text[:300])}"
                if reply.status_code not in RETRY_STATUS:
                    return Response(text=None, error=f"openai: {problem}", latency_s=time.monotonic() - start)
            if attempt == self.max_retries:
                break
            wait, why = self._delay(attempt, reply)
            if time.monotonic() + wait >= deadline:
                return Response(text=None, latency_s=time.monotonic() - start,
                                error=f"openai: {problem}; {why}, past the request deadline of {self.timeout_s:g} s")
            await asyncio.sleep(wait)
        return Response(text=None, error=f"openai: gave up after {self.max_retries + 1} attempts ({problem})",
                        latency_s=time.monotonic() - start)

    async def _answer_all(self, requests: list[Request], sampling: Sampling,
                          responses: list[Response | None]) -> None:
        """Fill `responses` as answers arrive (so an interrupt keeps those that did)."""
        slots = asyncio.Semaphore(self.concurrency)

        async def answer(index: int, client: httpx.AsyncClient) -> None:
            async with slots:
                responses[index] = await self.ask(client, requests[index], sampling)

        async with self.async_client() as client:
            await asyncio.gather(*(answer(index, client) for index in range(len(requests))))

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Response]:
        if not requests:
            return []
        responses: list[Response | None] = [None] * len(requests)
        try:
            run_coroutine(self._answer_all(requests, sampling, responses))
        except KeyboardInterrupt:  # the event loop has cancelled the requests in flight
            raise BatchInterrupted(responses) from None
        return [response or Response(text=None, error="openai: no answer") for response in responses]
