"""The offline tiny Qwen3-VL builder: a complete checkpoint, safe to build from several processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dybench.testing import build_tiny_qwen3_vl

pytestmark = pytest.mark.slow


def test_concurrent_builds_leave_one_complete_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    code = f"from dybench.testing import build_tiny_qwen3_vl; print(build_tiny_qwen3_vl({str(target)!r}))"
    builders = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [builder.communicate(timeout=300)[0].strip() for builder in builders]
    assert [b.returncode for b in builders] == [0, 0]
    assert outputs == [str(target), str(target)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no temp folders left behind
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "README.md"):
        assert (target / name).is_file()
    assert "noise" in (target / "README.md").read_text()
    config = json.loads((target / "config.json").read_text())
    assert config["text_config"]["head_dim"] == 64
    assert sum(config["text_config"]["rope_parameters"]["mrope_section"]) == 32
    assert config["vision_config"]["hidden_size"] == 64


def test_tokenizer_has_single_tokens_for_letters_and_answer_words(tmp_path: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(build_tiny_qwen3_vl(tmp_path / "tiny"))
    tokenizer = processor.tokenizer
    for text in ("A", "B", "C", "D", "E", " A", "answer", "Answer", " left", " right"):
        assert len(tokenizer.encode(text, add_special_tokens=False)) == 1, text
    chat = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}],
        add_generation_prompt=True, tokenize=False,
    )
    assert chat == "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"
