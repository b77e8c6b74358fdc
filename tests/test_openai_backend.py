"""The openai backend against a small local HTTP server that behaves like a flaky OpenAI endpoint:
retries on 429/5xx, no retry on other 4xx, the API key taken from the environment and never described."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dybench.backends.base import Sampling
from dybench.backends.registry import create_backend, resolve_model
from dybench.testing import random_clip_requests


class FlakyEndpoint(BaseHTTPRequestHandler):
    """Serves /v1/models; answers /v1/chat/completions with the queued statuses, then 200."""

    statuses: list[int] = []
    seen: list[dict] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "hosted-model", "owned_by": "someone"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"body": body, "authorization": self.headers.get("Authorization")})
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        if status != 200:
            self._send(status, {"error": {"message": f"status {status}"}}, {"Retry-After": "0"})
            return
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": "Answer: B"}}],
                         "usage": {"prompt_tokens": 7, "completion_tokens": 3}})


@pytest.fixture
def endpoint():
    FlakyEndpoint.statuses, FlakyEndpoint.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def requests_(tmp_path: Path):
    return random_clip_requests(tmp_path, 1, num_frames=4, size=32)


def test_rate_limits_and_server_errors_are_retried(endpoint, requests_) -> None:
    FlakyEndpoint.statuses = [429, 503]
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint, backoff_s=0.01)
    (response,) = backend.generate(requests_, Sampling())
    assert response.error is None and response.text == "Answer: B"
    assert response.extra["attempts"] == 3 and len(FlakyEndpoint.seen) == 3


def test_a_bad_request_is_not_retried_and_becomes_an_item_error(endpoint, requests_) -> None:
    FlakyEndpoint.statuses = [400]
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint, backoff_s=0.01)
    (response,) = backend.generate(requests_, Sampling())
    assert response.text is None and "HTTP 400" in response.error and len(FlakyEndpoint.seen) == 1


def test_retries_give_up_after_max_retries(endpoint, requests_) -> None:
    FlakyEndpoint.statuses = [500] * 10
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint, backoff_s=0.01, max_retries=2)
    (response,) = backend.generate(requests_, Sampling())
    assert "gave up after 3 attempts" in response.error and len(FlakyEndpoint.seen) == 3


def test_video_goes_as_base64_mp4_and_the_key_comes_from_the_named_env_var(endpoint, requests_, monkeypatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_KEY", "sk-test-secret")
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint, api_key_env="MY_PROVIDER_KEY")
    backend.generate(requests_, Sampling(max_tokens=9))
    sent = FlakyEndpoint.seen[0]
    assert sent["authorization"] == "Bearer sk-test-secret"
    assert sent["body"]["model"] == "hosted-model" and sent["body"]["max_tokens"] == 9
    video = sent["body"]["messages"][-1]["content"][0]
    assert video["type"] == "video_url" and video["video_url"]["url"].startswith("data:video/mp4;base64,")
    assert "mm_processor_kwargs" not in sent["body"]  # hosted APIs reject unknown fields
    described = json.dumps(backend.describe())
    assert "sk-test-secret" not in described and "MY_PROVIDER_KEY" in described
