"""How a sampled clip and a prompt become a model's input, the same way for every local backend.

Qwen-VL processors resample a video unless they are told which frames they already have and at
what rate the source ran; without that they assume 24 fps (an 8-frame clip became 4 frames). So
frames always travel with their metadata and `do_sample_frames=False`.

Pixel budgets: a spec states `min_pixels` / `max_pixels` per frame. Qwen2.5-VL's video processor
counts per frame too; Qwen3-VL's counts over all frames of the clip (t x h x w), so the budget
is scaled by the (temporally padded) frame count there.
"""

from __future__ import annotations

from typing import Any

from dybench.video import SampledClip

TEMPORAL_PATCH = 2
"""Qwen-VL video encoders embed frames in pairs; an odd count is padded to even."""


def video_metadata(clip: SampledClip) -> dict[str, Any]:
    """The metadata a Qwen-VL processor needs to place frames in time (transformers' VideoMetadata)."""
    return {
        "fps": float(clip.source_fps),
        "total_num_frames": int(clip.source_n_frames),
        "frames_indices": [int(i) for i in clip.indices],
        "duration": float(clip.source_n_frames / clip.source_fps) if clip.source_fps else None,
        "video_backend": "opencv",
    }


def vllm_video_metadata(clip: SampledClip) -> dict[str, Any]:
    """vLLM's form of the metadata: it also reads `do_sample_frames` from here."""
    return {**video_metadata(clip), "do_sample_frames": False}


def processor_size(spec: Any, n_frames: int) -> dict[str, int] | None:
    """The video processor's `size` for the spec's per-frame pixel budget (None: the processor's own)."""
    min_pixels, max_pixels = getattr(spec, "min_pixels", None), getattr(spec, "max_pixels", None)
    if min_pixels is None and max_pixels is None:
        return None
    family = getattr(spec, "family", "other")
    if family == "qwen3_vl":
        scale = -(-n_frames // TEMPORAL_PATCH) * TEMPORAL_PATCH
    elif family == "qwen2_5_vl":
        scale = 1
    else:
        return None
    size = {}
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels) * scale
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels) * scale
    if "shortest_edge" not in size or "longest_edge" not in size:
        return None  # the processor wants both; a half budget falls back to its defaults
    return size


def processor_kwargs(spec: Any, n_frames: int) -> dict[str, Any]:
    """Keyword arguments for the processor call (transformers) or `mm_processor_kwargs` (vLLM)."""
    kwargs: dict[str, Any] = {"do_sample_frames": False}
    size = processor_size(spec, n_frames)
    if size is not None:
        kwargs["size"] = size
    return kwargs


def chat_messages(spec: Any, prompt: str, video: Any = None) -> list[dict[str, Any]]:
    """The conversation for one item: optional system prompt, then video and question in one turn.

    `video` fills the video part where the caller's template engine wants the content inline (the
    OpenAI-compatible API); local processors only need the placeholder.
    """
    video_part: dict[str, Any] = {"type": "video"} if video is None else video
    text_part = {"type": "text", "text": prompt}
    content = [video_part, text_part] if getattr(spec, "video_first", True) else [text_part, video_part]
    messages: list[dict[str, Any]] = []
    system = getattr(spec, "system_prompt", None)
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": content})
    return messages
