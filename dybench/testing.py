"""Offline builders of tiny, randomly initialised video LLMs for tests, CI and the demo.

`build_tiny_qwen3_vl` writes a complete Qwen3-VL checkpoint (weights, config, tokenizer, chat
template, image and video processors) without touching the network. Both transformers and vLLM
load it. Its answers are noise: it exists so that every code path that runs a real model (the
hf and vllm backends, the OpenAI-compatible server, the trainer) can run on a CPU in seconds.

Shape choices that matter (see the project's notes on vLLM on CPU):
- text head_dim is 64: vLLM's CPU attention rejects smaller heads;
- the mrope sections sum to head_dim / 2;
- the vision tower is 64 wide: a 16-wide tower cannot learn anything from the frames;
- the video processor's pixel budget keeps small frames (e.g. 8 x 64 x 64) at their size.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

TINY_QWEN3_VL_VERSION = 1
"""Bump when anything below changes the checkpoint, so cached copies are rebuilt."""

TINY_QWEN3_VL_NAME = f"tiny-random-qwen3-vl-v{TINY_QWEN3_VL_VERSION}"

_BUILD_LOCK = threading.Lock()
"""Threads of one process build one at a time (transformers' lazy imports are not thread-safe);
processes are kept apart by the atomic rename."""

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen-style chat template: strings or lists of {"type": "video" | "image" | "text"} parts.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'video' or 'video' in part -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'image' or 'image' in part -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# What the tokenizer is trained on: the words of DyBench prompts and answers, so "answer", the
# option letters and common direction words come out as single tokens.
_WORDS = (
    "answer Answer ANSWER option options letter choose Choose question video clip frame frames "
    "the a an of in to is are which Which what What does do first then after before seconds "
    "left right up down moving moves move direction toward away opening closing open close "
    "rolling falling rising growing shrinking appears disappears object square circle ball red "
    "blue green yellow white black color colour event sequence order forward backward reversed "
    "camera static dynamic yes no true false think only with from by"
)
_TRAINING_LINES = [
    "Answer: A",
    "Answer: B",
    "Answer: C",
    "Answer: D",
    "Answer: E",
    "answer: A answer: B answer: C answer: D answer: E",
    "<answer>A</answer> <answer>B</answer> <answer>C</answer> <answer>D</answer> <answer>E</answer>",
    "A. left B. right C. up D. down E. none",
    "Answer with the option's letter from the given choices directly.",
    "<think> </think> 0 1 2 3 4 5 6 7 8 9 0.5 1.0 seconds",
]

VOCAB_SIZE = 1024

TEXT_CONFIG = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    rope_parameters={
        "rope_type": "default",
        "mrope_section": [12, 10, 10],
        "mrope_interleaved": True,
        "rope_theta": 10000.0,
    },
)
VISION_CONFIG = dict(
    depth=2,
    hidden_size=64,
    intermediate_size=128,
    num_heads=4,
    out_hidden_size=128,
    deepstack_visual_indexes=[1],
    patch_size=16,
    spatial_merge_size=2,
    temporal_patch_size=2,
    num_position_embeddings=64,
)

# The Qwen3-VL video processor budgets pixels over all frames (t * h * w). These limits keep
# 4..16 frames of 64 x 64 (or 2..64 frames of 32 x 32) exactly at their size.
VIDEO_SIZE = {"shortest_edge": 32 * 32 * 2, "longest_edge": 16 * 128 * 128}
IMAGE_SIZE = {"shortest_edge": 32 * 32, "longest_edge": 256 * 256}

MODEL_CARD = """\
# tiny-random-qwen3-vl (version {version}, seed {seed})

A tiny Qwen3-VL checkpoint with **random weights**, built offline by
`dybench.testing.build_tiny_qwen3_vl`. **Its outputs are noise.** Any score it gets is chance.

It exists so that the code paths that run a real model (transformers, the vLLM engine, the
OpenAI-compatible server, the CRPO trainer) can be exercised on a CPU in seconds, without
downloading weights. Do not report its numbers as results.

- text: 2 layers, hidden 128, head_dim 64, byte-level BPE vocabulary of {vocab} tokens
- vision: 2 blocks, hidden 64, patch 16, spatial merge 2, temporal patch 2
- parameters: {params:,}
- video processor: pixel budget {video_size} (over all frames), so small frames keep their size
"""


def default_cache_dir() -> Path:
    """`$DYBENCH_CACHE`, else ~/.cache/dybench."""
    return Path(os.environ.get("DYBENCH_CACHE") or Path.home() / ".cache" / "dybench").expanduser()


def tiny_qwen3_vl_path() -> Path:
    """Where the cached tiny checkpoint lives (it may not be built yet)."""
    return default_cache_dir() / TINY_QWEN3_VL_NAME


def ensure_tiny_qwen3_vl(seed: int = 0) -> Path:
    """The cached tiny checkpoint (one folder per seed), built on first use."""
    folder = tiny_qwen3_vl_path() if seed == 0 else default_cache_dir() / f"{TINY_QWEN3_VL_NAME}-seed{seed}"
    return build_tiny_qwen3_vl(folder, seed)


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(SPECIAL_TOKENS),
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = _WORDS.split()
    # Repetition makes every listed word (with and without a leading space) a merge target.
    corpus = _TRAINING_LINES * 20 + [" ".join(words)] * 20 + [w for w in words for _ in range(10)]
    corpus += [w.capitalize() for w in words for _ in range(5)]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer


def _write_checkpoint(folder: Path, seed: int) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=TEXT_CONFIG["max_position_embeddings"],
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config=dict(TEXT_CONFIG, vocab_size=len(tokenizer), pad_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], bos_token_id=None),
        vision_config=dict(VISION_CONFIG),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    config.eos_token_id = ids["<|im_end|>"]
    # Marks the checkpoint (and anything trained from it) so the registry picks tiny-model settings.
    config.dybench_tiny_model = TINY_QWEN3_VL_VERSION
    config.pad_token_id = ids["<|endoftext|>"]
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(folder)

    image_processor = Qwen2VLImageProcessor(
        size=dict(IMAGE_SIZE), patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    video_processor = Qwen3VLVideoProcessor(
        size=dict(VIDEO_SIZE), patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_sample_frames=False,
        cap_pixels_per_frame=False,  # the budget above is deliberate; the cap would shrink frames
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    (folder / "README.md").write_text(
        MODEL_CARD.format(version=TINY_QWEN3_VL_VERSION, seed=seed, vocab=len(tokenizer), params=params,
                          video_size=VIDEO_SIZE)
    )


def build_tiny_qwen3_vl(path: Path | None = None, seed: int = 0) -> Path:
    """Build the tiny random Qwen3-VL checkpoint in `path` (default: the dybench cache) and return it.

    An existing complete checkpoint at `path` is reused (whatever seed built it: its README says). The build happens in a temporary folder next to
    `path` that is renamed into place, so concurrent callers never see a half-written folder
    (the loser of a race discards its copy).
    """
    path = Path(path) if path is not None else tiny_qwen3_vl_path()
    if (path / "config.json").is_file() and (path / "README.md").is_file():
        return path
    with _BUILD_LOCK:
        if (path / "config.json").is_file() and (path / "README.md").is_file():
            return path  # another thread finished it while this one waited
        return _build_atomically(path, seed)


def _build_atomically(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        _write_checkpoint(tmp, seed)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the user's processes
        try:
            tmp.rename(path)
        except OSError:
            # Someone else finished first (the target now exists and is not empty): use theirs.
            if not (path / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def random_clip_requests(folder: Path, n: int, num_frames: int = 8, size: int = 64, source_frames: int = 16,
                         fps: float = 8.0, seed: int = 0) -> list:
    """`n` backend requests on random clips written to `folder` (real mp4 files, decoded back),
    each asking a two-option direction question. For backend tests and the overhead bench."""
    import numpy as np

    from dybench.backends.base import Request
    from dybench.schema import Item
    from dybench.video import load_clip, write_video

    rng = np.random.default_rng(seed)
    requests = []
    for index in range(n):
        path = Path(folder) / f"clip{index}.mp4"
        write_video(path, rng.integers(0, 256, (source_frames, size, size, 3), dtype=np.uint8), fps=fps)
        item = Item(id=f"clip{index}", pair_id=f"pair{index // 2}", task="direction", category="moving_direction",
                    video=path.name, question="Which way does the square move?", options=["left", "right"],
                    answer="A")
        prompt = "Which way does the square move?\nA. left\nB. right\nAnswer with the option's letter."
        requests.append(Request(item=item, prompt=prompt, clip=load_clip(path, num_frames=num_frames), video_path=path))
    return requests
