"""Prompt + clip -> processor tensors for a batch, built from the same pieces as the evaluation
backends (`dybench.backends.video_inputs`: chat messages, frame metadata, pixel budget), so a
trained model is trained on exactly the inputs `dybench eval --backend hf` will give it."""

from __future__ import annotations

from typing import Any

import torch

from dybench.backends.video_inputs import chat_messages, processor_kwargs, video_metadata
from dybench.video import SampledClip

TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def _transformers_metadata(clip: SampledClip) -> dict[str, Any]:
    # `do_sample_frames` is a processor option (passed below), not a metadata field, for transformers.
    return {k: v for k, v in video_metadata(clip).items() if k != "do_sample_frames"}


def _process(processor: Any, spec: Any, prompts: list[str], clips: list[SampledClip]) -> dict[str, Any]:
    texts = [
        processor.apply_chat_template(chat_messages(spec, prompt), add_generation_prompt=True, tokenize=False)
        for prompt in prompts
    ]
    processor.tokenizer.padding_side = "left"  # generation continues every row at the same column
    return dict(
        processor(
            text=texts,
            videos=[clip.frames for clip in clips],
            video_metadata=[_transformers_metadata(clip) for clip in clips],
            return_tensors="pt",
            padding=True,
            **processor_kwargs(spec, len(clips[0].frames)),
        )
    )


def _left_pad_merge(parts: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Concatenate single-prompt encodings row by row, left-padding the text tensors."""
    width = max(p["input_ids"].shape[1] for p in parts)
    merged: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if key in TEXT_KEYS:
            fill = pad_id if key == "input_ids" else 0
            values = [torch.nn.functional.pad(v, (width - v.shape[1], 0), value=fill) for v in values]
        merged[key] = torch.cat(values, dim=0)
    return merged


def encode_prompts(processor: Any, spec: Any, prompts: list[str], clips: list[SampledClip]) -> dict[str, Any]:
    """Left-padded processor inputs for `prompts[i]` about `clips[i]` (one video per prompt).

    The pixel budget of Qwen3-VL depends on the number of frames, so clips of different lengths
    (fps sampling) are encoded one by one and merged.
    """
    if len({len(clip.frames) for clip in clips}) == 1:
        return _process(processor, spec, prompts, clips)
    pad_id = processor.tokenizer.pad_token_id or 0
    return _left_pad_merge([_process(processor, spec, [p], [c]) for p, c in zip(prompts, clips)], pad_id)
