"""The real vLLM engine (the CPU build here) on the tiny Qwen3-VL with video input: in process, and
through its OpenAI-compatible server queried by the openai backend. One engine start per mode."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dybench.backends.base import Sampling
from dybench.backends.registry import create_backend, locate_weights, resolve_model
from dybench.backends.video_inputs import processor_kwargs, video_metadata
from dybench.errors import DyBenchError
from dybench.testing import random_clip_requests

SERVER_START_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DYBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        spec = resolve_model("tiny-random-qwen3-vl")
        weights = locate_weights(spec)  # builds the checkpoint once for this module
    return spec.model_copy(update={"path": str(weights), "builder": None})


@pytest.fixture(scope="module")
def engine(tiny_spec):
    backend = create_backend(tiny_spec, "vllm")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory):
    return random_clip_requests(tmp_path_factory.mktemp("clips"), 4, num_frames=8)


@pytest.mark.slow
def test_engine_answers_a_whole_batch_of_videos(engine, clips) -> None:
    responses = engine.generate(clips, Sampling(max_tokens=8))
    assert len(responses) == len(clips)
    for response in responses:
        assert response.error is None and isinstance(response.text, str)
        assert response.extra["prompt_tokens"] > 0


@pytest.mark.slow
def test_engine_sees_the_same_video_tokens_as_transformers(engine, clips, tiny_spec) -> None:
    # Same prompt length as the transformers processor given the same frames and metadata: the
    # engine neither resampled the 8 frames nor resized the 64 x 64 frames.
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_spec.path)
    request = clips[0]
    expected = processor(
        text=[engine.chat_text(request.prompt)], videos=[request.clip.frames], video_metadata=[video_metadata(request.clip)],
        return_tensors="pt", **processor_kwargs(tiny_spec, len(request.clip.frames)),
    )["input_ids"].shape[1]
    (response,) = engine.generate([request], Sampling(max_tokens=2))
    assert response.extra["prompt_tokens"] == expected


@pytest.mark.slow
def test_engine_greedy_answers_do_not_depend_on_batching(engine, clips) -> None:
    batched = [r.text for r in engine.generate(clips, Sampling(max_tokens=6))]
    alone = [engine.generate([c], Sampling(max_tokens=6))[0].text for c in clips[:2]]
    assert batched[:2] == alone


@pytest.mark.slow
def test_describe_records_engine_settings(engine) -> None:
    described = engine.describe()
    assert described["backend"] == "vllm" and described["device"] == "cpu"
    assert described["limit_mm_per_prompt"] == {"video": 1, "image": 0}
    assert 0 < described["gpu_memory_utilization"] <= 0.2  # CPU: a fraction of RAM, not the GPU default
    json.dumps(described)


# --- the OpenAI-compatible server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_spec, clips, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    media_root = Path(clips[0].video_path).parent
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_spec.path,
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
        "--max-model-len", "2048", "--gpu-memory-utilization", "0.1",
        "--limit-mm-per-prompt", json.dumps({"video": 1, "image": 0}),
        "--allowed-local-media-path", str(media_root), "--trust-request-mm-kwargs",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"vLLM server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not up after {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield base_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_openai_backend_sends_base64_video_to_the_vllm_server(server, tiny_spec, clips, engine) -> None:
    backend = create_backend(tiny_spec, "openai", base_url=server, concurrency=2, send_mm_kwargs=True)
    try:
        assert backend.model == tiny_spec.path and backend.server_is_vllm
        responses = backend.generate(clips, Sampling(max_tokens=8))
        assert [r.error for r in responses] == [None] * len(clips)
        assert all(isinstance(r.text, str) for r in responses)
        # The mp4 round trip kept every frame at its size: as many prompt tokens as in process.
        in_process = engine.generate(clips, Sampling(max_tokens=1))
        assert [r.extra["prompt_tokens"] for r in responses] == [r.extra["prompt_tokens"] for r in in_process]
        assert "api_key" not in json.dumps(backend.describe()).replace("api_key_env", "")
    finally:
        backend.close()


@pytest.mark.slow
def test_openai_backend_can_send_file_urls_to_a_local_server(server, tiny_spec, clips) -> None:
    backend = create_backend(tiny_spec, "openai", base_url=server, video_transport="file")
    try:
        responses = backend.generate(clips[:2], Sampling(max_tokens=4))
        assert [r.error for r in responses] == [None, None]
    finally:
        backend.close()


def test_unreachable_server_fails_before_any_work() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(DyBenchError, match=f"cannot reach an OpenAI-compatible server at http://127.0.0.1:{port}/v1"):
        create_backend(resolve_model("qwen3-vl-8b"), "openai", base_url=f"http://127.0.0.1:{port}/v1")


def test_data_parallel_in_one_process_points_to_shards(tmp_path: Path) -> None:
    from dybench.backends.vllm import VLLMBackend

    with pytest.raises(DyBenchError, match="--shard i/N"):
        VLLMBackend(resolve_model("qwen3-vl-8b"), tmp_path, data_parallel_size=2)
