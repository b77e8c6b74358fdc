"""The transformers backend: `AutoModelForImageTextToText` + `AutoProcessor`, batched, CPU or GPU.

Slower than vLLM on a GPU, but it needs nothing beyond transformers and runs anywhere, which
makes it the reference for checking that the other backends feed the model the same input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dybench.backends.base import Request, Response, Sampling
from dybench.backends.video_inputs import chat_messages, processor_kwargs, video_metadata
from dybench.errors import DyBenchError

DTYPES = ("auto", "float32", "bfloat16", "float16")


class HFBackend:
    """Answers a batch in one padded `generate` call (left padding, so new tokens line up)."""

    name = "hf"

    def __init__(self, spec: Any, weights: Path, dtype: str | None = None, device: str | None = None,
                 trust_remote_code: bool = False, attn_implementation: str | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.spec = spec
        self.weights = Path(weights)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is not None and dtype not in DTYPES:
            raise DyBenchError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
        # float32 on CPU (bf16 matmuls are slow there); bf16 on GPUs, as the Qwen-VL models ship.
        self.dtype = dtype or ("float32" if self.device == "cpu" else "bfloat16")
        self.trust_remote_code = trust_remote_code
        try:
            self.processor = AutoProcessor.from_pretrained(self.weights, trust_remote_code=trust_remote_code)
            self.model = AutoModelForImageTextToText.from_pretrained(
                self.weights,
                dtype=self.dtype if self.dtype == "auto" else getattr(torch, self.dtype),
                trust_remote_code=trust_remote_code,
                **({"attn_implementation": attn_implementation} if attn_implementation else {}),
            )
        except (OSError, ValueError, KeyError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DyBenchError(f"{self.weights}: transformers cannot load this model ({first_line})") from None
        self.model.to(self.device).eval()
        self.processor.tokenizer.padding_side = "left"
        self.attn_implementation = getattr(self.model.config, "_attn_implementation", None)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "weights": str(self.weights),
            "dtype": self.dtype,
            "device": self.device,
            "attn_implementation": self.attn_implementation,
            "trust_remote_code": self.trust_remote_code,
            "outputs_are_noise": bool(getattr(self.spec, "outputs_are_noise", False)),
        }

    def close(self) -> None:
        self.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def _prompt_text(self, request: Request) -> str:
        template = getattr(self.spec, "chat_template", None)  # --chat-template, else the checkpoint's
        return self.processor.apply_chat_template(
            chat_messages(self.spec, request.prompt), add_generation_prompt=True, tokenize=False,
            **({"chat_template": template} if template else {}),
        )

    def _generate_group(self, requests: list[Request], sampling: Sampling, kwargs: dict[str, Any]) -> list[str]:
        import torch

        inputs = self.processor(
            text=[self._prompt_text(r) for r in requests],
            videos=[r.clip.frames for r in requests],
            video_metadata=[video_metadata(r.clip) for r in requests],
            padding=True,
            return_tensors="pt",
            **kwargs,
        ).to(self.device)
        inputs.pop("token_type_ids", None)
        greedy = sampling.temperature <= 0
        if not greedy:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=sampling.max_tokens,
                do_sample=not greedy,
                **({} if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p}),
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Response]:
        responses: list[Response | None] = [None] * len(requests)
        # Items whose processor settings differ (frame counts change Qwen3-VL's pixel budget) are
        # batched separately; a typical run has one group.
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            key = repr(sorted(processor_kwargs(self.spec, len(request.clip.frames)).items()))
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            group = [requests[i] for i in indices]
            kwargs = processor_kwargs(self.spec, len(group[0].clip.frames))
            start = time.perf_counter()
            try:
                texts = self._generate_group(group, sampling, kwargs)
            except Exception as exc:
                if len(group) == 1:
                    responses[indices[0]] = Response(text=None, error=f"hf: {type(exc).__name__}: {exc}")
                    continue
                # Find the item that fails instead of failing the whole batch.
                for i in indices:
                    responses[i] = self.generate([requests[i]], sampling)[0]
                continue
            share = (time.perf_counter() - start) / len(group)
            for i, text in zip(indices, texts):
                responses[i] = Response(text=text, latency_s=share)
        return [r if r is not None else Response(text=None, error="hf: no output") for r in responses]
