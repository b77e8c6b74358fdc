"""The openai backend against a small local HTTP server that behaves like a flaky OpenAI endpoint:
retries on 429/5xx, no retry on other 4xx, the API key taken from the environment and never described;
and like a hostile one: odd reply contents, bad Retry-After headers, replies that trickle or never
come, error bodies that echo the request's headers, replies of many megabytes."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dybench.backends.base import Sampling
from dybench.backends.registry import create_backend, resolve_model
from dybench.evaluate import run_eval
from dybench.testing import random_clip_requests
from trickle import write_trickling

SECRET = "sk-test-0123456789abcdef-secret"


class FlakyEndpoint(BaseHTTPRequestHandler):
    """Serves /v1/models; answers /v1/chat/completions with the queued statuses, then 200.

    `content` is the reply's message content (any JSON value), `retry_after` the Retry-After header
    sent with an error status, `echo_headers` makes an error body repeat the request's headers,
    `behaviour` is "normal", "trickle" (one byte of the reply every 0.2 s) or "hang" (no reply)."""

    statuses: list[int] = []
    seen: list[dict] = []
    content: Any = "Answer: B"
    retry_after: str = "0"
    echo_headers: bool = False
    behaviour: str = "normal"
    stop = threading.Event()

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
        endpoint = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        endpoint.seen.append({"body": body, "authorization": self.headers.get("Authorization"), "path": self.path})
        status = endpoint.statuses.pop(0) if endpoint.statuses else 200
        if status != 200:
            message = f"status {status}" + (f"; you sent {dict(self.headers)}" if endpoint.echo_headers else "")
            self._send(status, {"error": {"message": message}}, {"Retry-After": endpoint.retry_after})
            return
        if endpoint.behaviour == "hang":
            endpoint.stop.wait(60)
            return
        reply = {"choices": [{"message": {"role": "assistant", "content": endpoint.content}}],
                 "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
        if endpoint.behaviour == "trickle":
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            write_trickling(self.wfile, data, endpoint.stop)
            return
        self._send(200, reply)


@pytest.fixture
def endpoint():
    FlakyEndpoint.statuses, FlakyEndpoint.seen = [], []
    FlakyEndpoint.content, FlakyEndpoint.retry_after = "Answer: B", "0"
    FlakyEndpoint.echo_headers, FlakyEndpoint.behaviour = False, "normal"
    FlakyEndpoint.stop = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    FlakyEndpoint.stop.set()
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


# --- replies whose content is not one string --------------------------------------------------


def test_content_given_as_a_list_of_text_parts_is_joined(endpoint, requests_) -> None:
    FlakyEndpoint.content = [{"type": "text", "text": "Answer:"}, {"type": "image_url", "image_url": {"url": "x"}},
                             {"type": "text", "text": " B"}]
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint)
    (response,) = backend.generate(requests_, Sampling())
    assert response.error is None and response.text == "Answer: B"


@pytest.mark.parametrize("content", [42, {"text": "B"}, [1, 2]])
def test_content_that_is_not_text_is_an_item_error_never_a_crash(endpoint, requests_, content) -> None:
    FlakyEndpoint.content = content
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint)
    (response,) = backend.generate(requests_, Sampling())
    assert response.text is None and "not text" in response.error


@pytest.mark.parametrize("content", [[{"type": "text", "text": "Answer: B"}], 42])
def test_a_run_over_odd_contents_stores_every_item(endpoint, synthetic_test_set, tmp_path, content) -> None:
    FlakyEndpoint.content = content
    scores = run_eval("qwen3-vl-8b", str(synthetic_test_set), tmp_path / "run", backend="openai", limit=4,
                      backend_options={"base_url": endpoint}, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert scores["n_items"] == len(rows) == 4
    if isinstance(content, list):
        assert {row["pred"] for row in rows} == {"B"}
    else:
        assert all(row["pred"] is None and "not text" in row["error"] for row in rows)


# --- Retry-After as servers really send it ----------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", "nan", "inf", "1e400", ""])
def test_a_retry_after_that_is_negative_past_or_garbage_does_not_stall_or_crash(endpoint, requests_, value) -> None:
    FlakyEndpoint.statuses, FlakyEndpoint.retry_after = [429], value
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint, backoff_s=0.01)
    start = time.monotonic()
    (response,) = backend.generate(requests_, Sampling())
    assert response.error is None and response.text == "Answer: B"
    assert time.monotonic() - start < 2.0


def test_a_retry_after_past_the_request_deadline_gives_up_at_once(endpoint, requests_) -> None:
    FlakyEndpoint.statuses, FlakyEndpoint.retry_after = [429], "99999"
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint, timeout_s=3)
    start = time.monotonic()
    (response,) = backend.generate(requests_, Sampling())
    assert response.text is None and "Retry-After" in response.error
    assert time.monotonic() - start < 1.5 and len(FlakyEndpoint.seen) == 1


# --- the request deadline: total time, not time per read --------------------------------------


@pytest.mark.parametrize("behaviour", ["trickle", "hang"])
def test_a_reply_that_trickles_or_never_comes_ends_at_the_request_deadline(endpoint, requests_, behaviour) -> None:
    FlakyEndpoint.behaviour = behaviour
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint, timeout_s=1.5, max_retries=0)
    start = time.monotonic()
    (response,) = backend.generate(requests_, Sampling())
    elapsed = time.monotonic() - start
    assert response.text is None and "1.5 s" in response.error
    assert 1.4 < elapsed < 2.5, elapsed


# --- secrets never reach what is written ------------------------------------------------------


def test_an_error_body_echoing_the_authorization_header_is_redacted(endpoint, requests_, monkeypatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_KEY", SECRET)
    FlakyEndpoint.statuses, FlakyEndpoint.echo_headers = [400], True
    backend = create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=endpoint, api_key_env="MY_PROVIDER_KEY")
    (response,) = backend.generate(requests_, Sampling())
    assert FlakyEndpoint.seen[0]["authorization"] == f"Bearer {SECRET}"  # the server did get the key
    assert "HTTP 400" in response.error and "[redacted]" in response.error
    assert SECRET not in response.error and "0123456789abcdef" not in response.error


def test_no_credential_lands_in_the_run_directory(endpoint, synthetic_test_set, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_KEY", SECRET)
    FlakyEndpoint.statuses, FlakyEndpoint.echo_headers = [400, 400], True
    host = endpoint.removeprefix("http://")
    base_url = f"http://alice:hunter2-password@{host}?api_key=query-secret-1&api-version=2024"
    monkeypatch.setattr("sys.argv", ["dybench", "eval", "--base-url", base_url, "--api-key-env", "MY_PROVIDER_KEY"])
    run_eval("qwen3-vl-8b", str(synthetic_test_set), tmp_path / "run", backend="openai", limit=4, progress=False,
             backend_options={"base_url": base_url, "api_key_env": "MY_PROVIDER_KEY"})
    assert FlakyEndpoint.seen[0]["path"].endswith("/v1/chat/completions?api_key=query-secret-1&api-version=2024")
    written = "".join(path.read_text() for path in (tmp_path / "run").iterdir())
    for secret in (SECRET, "hunter2-password", "query-secret-1"):
        assert secret not in written
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["backend_settings"]["base_url"] == f"http://[redacted]@{host}?api_key=[redacted]&api-version=2024"
    assert "HTTP 400" in (tmp_path / "run" / "predictions.jsonl").read_text()


# --- a reply of many megabytes ----------------------------------------------------------------


def test_a_huge_reply_is_stored_cut_counted_as_what_it_answered_and_marked(endpoint, synthetic_test_set,
                                                                          tmp_path) -> None:
    from dybench.evaluate import MAX_STORED_OUTPUT_CHARS

    FlakyEndpoint.content = "Answer: B\n" + "blah " * 2_000_000  # 10 MB
    run_eval("qwen3-vl-8b", str(synthetic_test_set), tmp_path / "run", backend="openai", limit=2,
             backend_options={"base_url": endpoint}, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["pred"] == "B"
        assert row["output_chars"] == len(FlakyEndpoint.content)
        assert len(row["output"]) < MAX_STORED_OUTPUT_CHARS + 100 and row["output"].startswith("Answer: B\nblah")
        assert "characters cut" in row["output"]


def test_an_unreachable_server_is_named_without_its_credentials(synthetic_test_set, tmp_path) -> None:
    import os
    import socket
    import subprocess
    import sys

    from cli_errors import assert_one_line_error

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-c", "from dybench.cli import main; main()", "eval", "--model", "qwen3-vl-8b",
         "--backend", "openai", "--base-url", f"http://alice:hunter2-password@127.0.0.1:{port}/v1?token=tok-99",
         "--data", str(synthetic_test_set), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert_one_line_error(result, "cannot reach", f"127.0.0.1:{port}")
    assert "hunter2-password" not in result.stderr and "tok-99" not in result.stderr


def test_rows_name_the_frames_sent_and_none_when_the_server_samples_the_file(endpoint, synthetic_test_set,
                                                                              tmp_path) -> None:
    for transport in ("base64", "file"):
        run_eval("qwen3-vl-8b", str(synthetic_test_set), tmp_path / transport, backend="openai", limit=2,
                 num_frames=4, backend_options={"base_url": endpoint, "video_transport": transport}, progress=False)
    sent = [json.loads(line) for line in (tmp_path / "base64" / "predictions.jsonl").read_text().splitlines()]
    served = [json.loads(line) for line in (tmp_path / "file" / "predictions.jsonl").read_text().splitlines()]
    assert all(len(row["frame_indices"]) == len(row["frame_timestamps_s"]) == 4 for row in sent)
    assert all(row["frame_indices"] is None and row["frame_timestamps_s"] is None for row in served)
    assert all(row["target"] and row["correct"] == (row["pred"] == row["target"]) for row in sent + served)
