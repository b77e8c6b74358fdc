"""Any OpenAI-compatible chat endpoint: `vllm serve`, SGLang, hosted APIs.

The sampled frames are re-encoded (losslessly) as a small mp4 at the sampled frame rate and sent
as a base64 data URL, so the server sees exactly the frames the other backends see, at the right
timestamps. A vLLM server must then be told to keep every frame it gets, or its video loader
resamples to 2 fps: start it with `--media-io-kwargs '{"video": {"fps": 30}}'
--mm-processor-kwargs '{"do_sample_frames": false}'`, or start it with `--trust-request-mm-kwargs`
and pass `send_mm_kwargs=True` (then each request carries these settings and the pixel budget). With
`video_transport="file"` the original file is sent as a file:// URL instead (for
a local server started with `--allowed-local-media-path`); the server then samples it itself.

Requests run in a thread pool (`concurrency` in flight); 429, 5xx, timeouts and dropped
connections are retried with exponential backoff. The API key is read from the environment
variable named by `api_key_env` and is never stored or described.
"""

from __future__ import annotations

import base64
import math
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from dybench.backends.base import Request, Response, Sampling
from dybench.backends.video_inputs import chat_messages, processor_kwargs
from dybench.errors import DyBenchError
from dybench.video import SampledClip, write_video

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
TRANSPORTS = ("base64", "file")
KEEP_ALL_FPS = 30
"""A loader rate at or above the clip's own keeps every frame (vLLM's Qwen3-VL loader caps at 30)."""


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
        timeout_s: float = 120.0,
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
        self.spec = spec
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env or DEFAULT_API_KEY_ENV
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.video_transport = video_transport
        self.send_mm_kwargs = bool(send_mm_kwargs)
        key = os.environ.get(self.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout_s,
                                   limits=httpx.Limits(max_connections=self.concurrency))
        self.model, self.server_is_vllm = self._check_server(served_model_name)

    # --- startup --------------------------------------------------------------------------------

    def _check_server(self, served_model_name: str | None) -> tuple[str, bool]:
        """Fail now, in one line, if the server is unreachable, refuses the key or lacks the model."""
        try:
            reply = self.client.get("/models", timeout=min(self.timeout_s, 10.0))
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
            raise DyBenchError(f"{self.base_url}/models answered HTTP {reply.status_code}: is it an OpenAI-compatible server?")
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
                           "pass the served name as the served_model_name option")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "base_url": self.base_url,
            "served_model": self.model,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "video_transport": self.video_transport,
            "server_is_vllm": self.server_is_vllm,
            "send_mm_kwargs": self.send_mm_kwargs,
            "outputs_are_noise": bool(getattr(self.spec, "outputs_are_noise", False)),
        }

    def close(self) -> None:
        self.client.close()

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
        return body

    def _delay(self, attempt: int, reply: httpx.Response | None) -> float:
        retry_after = reply.headers.get("retry-after") if reply is not None else None
        if retry_after:
            try:
                return min(60.0, float(retry_after))
            except ValueError:
                pass
        return min(30.0, self.backoff_s * 2**attempt) * (0.5 + random.random() / 2)

    def ask(self, request: Request, sampling: Sampling) -> Response:
        """One chat completion, retried on rate limits, server errors and timeouts."""
        start = time.perf_counter()
        try:
            body = self.payload(request, sampling)
        except Exception as exc:
            return Response(text=None, error=f"openai: cannot prepare the request ({type(exc).__name__}: {exc})")
        problem = ""
        for attempt in range(self.max_retries + 1):
            reply = None
            try:
                reply = self.client.post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}"
            else:
                if reply.status_code == 200:
                    try:
                        answer = reply.json()
                        text = answer["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        return Response(text=None, error=f"openai: malformed reply: {reply.text[:300]}")
                    extra: dict[str, Any] = {"attempts": attempt + 1} if attempt else {}
                    usage = answer.get("usage") or {}
                    if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
                        extra["prompt_tokens"] = usage["prompt_tokens"]
                    return Response(text=text or "", latency_s=time.perf_counter() - start, extra=extra)
                problem = f"HTTP {reply.status_code}: {reply.text[:300]}"
                if reply.status_code not in RETRY_STATUS:
                    return Response(text=None, error=f"openai: {problem}", latency_s=time.perf_counter() - start)
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, reply))
        return Response(text=None, error=f"openai: gave up after {self.max_retries + 1} attempts ({problem})",
                        latency_s=time.perf_counter() - start)

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Response]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)),
                                thread_name_prefix="openai") as pool:
            return list(pool.map(lambda request: self.ask(request, sampling), requests))
