"""The transformers backend runs the tiny Qwen3-VL on real clips, with frames kept as sampled."""

from __future__ import annotations

from pathlib import Path

import pytest

from dybench.backends.base import Sampling
from dybench.backends.registry import create_backend, resolve_model
from dybench.backends.video_inputs import processor_kwargs, video_metadata
from dybench.testing import random_clip_requests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_backend(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DYBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        backend = create_backend(resolve_model("tiny-random-qwen3-vl"), "hf", device="cpu")
    yield backend
    backend.close()


def test_tiny_model_answers_every_clip_in_one_batch(hf_backend, tmp_path: Path) -> None:
    requests = random_clip_requests(tmp_path, 3)
    responses = hf_backend.generate(requests, Sampling(max_tokens=6))
    assert len(responses) == 3
    for response in responses:
        assert response.error is None and isinstance(response.text, str)
        assert response.latency_s is not None and response.latency_s > 0


def test_greedy_answers_are_reproducible(hf_backend, tmp_path: Path) -> None:
    requests = random_clip_requests(tmp_path, 2, seed=3)
    first = [r.text for r in hf_backend.generate(requests, Sampling(max_tokens=5))]
    second = [r.text for r in hf_backend.generate(requests, Sampling(max_tokens=5))]
    assert first == second


def test_processor_keeps_the_sampled_frames_and_their_size(hf_backend, tmp_path: Path) -> None:
    # 8 sampled frames of 64 x 64 -> a grid of 4 (frame pairs) x 4 x 4 patches: nothing resampled or resized.
    request = random_clip_requests(tmp_path, 1, num_frames=8, size=64)[0]
    processor = hf_backend.processor
    inputs = processor(
        text=[hf_backend._prompt_text(request)],
        videos=[request.clip.frames],
        video_metadata=[video_metadata(request.clip)],
        return_tensors="pt",
        **processor_kwargs(hf_backend.spec, 8),
    )
    assert inputs["video_grid_thw"].tolist() == [[4, 4, 4]]
    # The prompt carries the real timestamps of the sampled frames (source indices at 8 fps).
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    first_pair = sum(request.clip.indices[:2]) / 2 / request.clip.source_fps
    assert f"<{first_pair:.1f} seconds>" in text


def test_clips_with_different_frame_counts_share_a_call(hf_backend, tmp_path: Path) -> None:
    requests = random_clip_requests(tmp_path / "a", 1, num_frames=8) + random_clip_requests(tmp_path / "b", 1, num_frames=4)
    responses = hf_backend.generate(requests, Sampling(max_tokens=4))
    assert [r.error for r in responses] == [None, None]


def test_describe_records_settings_and_noise_flag(hf_backend) -> None:
    described = hf_backend.describe()
    assert described["backend"] == "hf" and described["device"] == "cpu" and described["dtype"] == "float32"
    assert described["outputs_are_noise"] is True and described["trust_remote_code"] is False
