"""`dybench export hf`: a dataset as a Hugging Face `datasets` video folder, optionally pushed to the hub.

The folder (read back by dybench/hf_dataset.py, `--data hf:DIR`):

- `metadata.jsonl`: one row per item, `file_name` (the clip under `videos/`) then the manifest's
  fields (docs/architecture.md, "Contracts"); `meta` is a JSON string, because its keys differ
  between categories and `datasets` would otherwise give every row every key;
- `videos/`: the clips, copied byte for byte (a clip shared by several items is copied once);
- `README.md`: a dataset card whose YAML header names the one split (the build's: `test` or
  `train`), its files, the licence and the task category;
- `dybench_export.json`: what was exported, written last.

The export is written in a hidden folder beside DIR and renamed into place when complete, so an
interrupted export never looks like a finished one. DIR is replaced only when it is empty or an
earlier export of the same data.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dybench.atomic import current_umask, write_text_atomic
from dybench.data import Dataset
from dybench.errors import DyBenchError
from dybench.hf_dataset import EXTRA, ITEM_FIELDS, METADATA, RECORD, VIDEOS, ExportRecord, read_record, split_of
from dybench.locks import describe_holder, file_lock, lock_path_for
from dybench.schema import Item
from dybench.text_files import read_text

CARD = "README.md"


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    split: str
    n_items: int
    n_clips: int
    bytes_copied: int


def _video_extensions() -> tuple[str, ...]:
    """The extensions `datasets`' video folder reads; a clip with another one would be dropped by it."""
    try:
        from datasets.packaged_modules.videofolder.videofolder import VIDEO_EXTENSIONS
    except ImportError:  # an older or newer layout of the package: its list as of datasets 4 and 5
        VIDEO_EXTENSIONS = [".mkv", ".mp4", ".avi", ".mpeg", ".mov"]
    return tuple(VIDEO_EXTENSIONS)


def clip_names(dataset: Dataset) -> dict[str, str]:
    """Each item's exported clip, `videos/<path in the source>`, by item id. Refuses a missing clip,
    an extension `datasets` does not read, and two source clips that would land on one name."""
    extensions = _video_extensions()
    names: dict[str, str] = {}
    source_of: dict[str, Path] = {}
    for item in dataset.items:
        source = dataset.video_path(item)
        relative = source.relative_to(dataset.root.resolve()).as_posix()
        name = relative if relative.startswith(VIDEOS + "/") else f"{VIDEOS}/{relative}"
        if not source.is_file():
            raise DyBenchError(f"item {item.id}: clip {item.video} not found in {dataset.root}; an export needs every clip")
        if source.suffix.lower() not in extensions:
            raise DyBenchError(f"item {item.id}: clip {item.video}: `datasets` reads only {', '.join(extensions)} "
                               "clips; convert it first")
        if source_of.setdefault(name, source) != source:
            raise DyBenchError(f"item {item.id}: clips {source_of[name]} and {source} would both be exported "
                               f"as {name}; rename one")
        names[item.id] = name
    return names


def metadata_row(item: Item, file_name: str, with_extra: bool) -> dict:
    row = item.model_dump(mode="json")
    out = {"file_name": file_name, **{name: row[name] for name in ITEM_FIELDS}}
    out["meta"] = json.dumps(row["meta"], sort_keys=True)
    if with_extra:
        out[EXTRA] = json.dumps(item.model_extra or {}, sort_keys=True)
    return out


def _licence(dataset: Dataset) -> tuple[str, str]:
    """(hub licence id, sentence): rendered clips are CC BY 4.0 (data_cards/TEMPLATE.md); a
    re-export keeps its source export's licence; other clips keep their sources' licence."""
    from dybench.build import BUILD_CONFIG, BuildConfig

    build = dataset.root / BUILD_CONFIG
    if build.is_file() and BuildConfig.model_validate_json(read_text(build)).source == "synthetic":
        return "cc-by-4.0", "CC BY 4.0 (the rendered clips and their questions)."
    card = dataset.root / CARD
    if read_record(dataset.root) is not None and card.is_file():
        for line in read_text(card).splitlines()[:5]:
            if line.startswith("license: ") and line.strip() != "license: other":
                return line.removeprefix("license: ").strip(), "that of the exported source (its card's)."
    return "other", "that of the source videos (the clips here are copies of them or derived from them)."


def card_text(dataset: Dataset, split: str, n_clips: int, out_name: str) -> str:
    licence_id, licence = _licence(dataset)
    categories = sorted({item.category for item in dataset.items})
    pairs = len({item.pair_id for item in dataset.items})
    return f"""---
license: {licence_id}
task_categories:
- video-question-answering
pretty_name: {json.dumps(f"DyBench counterfactual pairs ({dataset.name})")}
configs:
- config_name: default
  data_files:
  - split: {split}
    path:
    - {METADATA}
    - {VIDEOS}/**
---

# {dataset.name}: DyBench counterfactual clip pairs (Hugging Face layout)

{len(dataset.items)} items (video-question rows) in {pairs} pairs over {n_clips} clips, split `{split}`;
categories: {', '.join(categories)}. Exported by `dybench export hf` from the `{dataset.family}` dataset
`{dataset.name}`. Licence: {licence}

Each pair asks the same question of two clips that differ only in their dynamics (mirrored, played
backwards, or with two events swapped), with different correct answers.

## Files

- `{METADATA}`: one row per item: `file_name` (the clip), `id`, `pair_id`, `task`, `category`,
  `question`, `options`, `answer` (letter), `transform`, `kind`, `variant`, `option_keys`, and
  `meta` (a JSON object as a string: its keys differ between categories).
- `{VIDEOS}/`: the clips, byte for byte those of the source.
- `{RECORD}`: what was exported (source, family, split), for `dybench eval --data hf:{out_name}`.

## Loading

```python
import json
from datasets import Video, load_dataset

ds = load_dataset("{out_name}", split="{split}")                     # the folder, or the hub repository
paths = ds.cast_column("video", Video(decode=False))                  # clip paths instead of decoded frames
meta = json.loads(ds[0]["meta"])
```

or, with the harness: `dybench eval --model baseline:motion --data hf:{out_name} --out runs/{out_name}`.
"""


def _same_data(record: ExportRecord | None, dataset: Dataset) -> bool:
    return record is not None and (record.family, record.source_fingerprint) == (dataset.family, dataset.fingerprint)


def _check_target(out: Path, dataset: Dataset) -> None:
    source = dataset.root.resolve()
    target = out.resolve()
    if target == source or target.is_relative_to(source) or source.is_relative_to(target):
        raise DyBenchError(f"{out}: the export must go outside the dataset folder {dataset.root}; choose another --out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DyBenchError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not _same_data(read_record(out), dataset):
        raise DyBenchError(f"{out}: not empty and not an export of {dataset.name} ({dataset.fingerprint}); "
                           "choose an empty or new --out folder")


def _copy(source: Path, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target.stat().st_size


def export_hf(dataset: Dataset, source_spec: str, out: Path) -> ExportSummary:
    """Write `dataset` to `out` in the `datasets` video-folder layout (see the module docstring)."""
    from dybench import __version__

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # One exporter per --out: a second one would take the first's half-written copy for a leftover.
    with file_lock(lock_path_for(out), wait=False, busy_message=lambda pid: (
            f"{out} is being exported by another process ({describe_holder(pid)}); wait for it to finish "
            "or choose another --out")):
        _check_target(out, dataset)
        names = clip_names(dataset)
        split = split_of(dataset)
        for leftover in out.parent.glob(f".{out.name}.*.exporting"):  # a killed export's half-written copy
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".exporting", dir=out.parent))
        try:
            copied: dict[str, int] = {}
            for item in dataset.items:
                name = names[item.id]
                if name not in copied:
                    copied[name] = _copy(dataset.video_path(item), staging / name)
            with_extra = any(item.model_extra for item in dataset.items)
            rows = [metadata_row(item, names[item.id], with_extra) for item in dataset.items]
            (staging / METADATA).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                                            encoding="utf-8")
            (staging / CARD).write_text(card_text(dataset, split, len(copied), out.name), encoding="utf-8")
            record = ExportRecord(name=dataset.name, family=dataset.family, split=split, source=source_spec,
                                  source_fingerprint=dataset.fingerprint, n_items=len(rows), n_clips=len(copied),
                                  dybench_version=__version__)
            write_text_atomic(staging / RECORD, record.model_dump_json(indent=2) + "\n")
            os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; an export is for everyone to read
            _replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return ExportSummary(out=out, split=split, n_items=len(rows), n_clips=len(copied), bytes_copied=sum(copied.values()))


def _replace(staging: Path, out: Path) -> None:
    """Move the finished export to `out`; an earlier export there (already checked to be of the same
    data) or an empty folder is set aside first and removed after."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".replaced", dir=out.parent))
    os.rename(out, old / out.name)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def check_repo_id(repo: str) -> None:
    """Refuse a repository name the hub would refuse, before anything is written."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise DyBenchError(f"--push-to-hub {repo}: {' '.join(str(exc).split())}") from None
    if "/" not in repo:
        raise DyBenchError(f"--push-to-hub {repo}: give the repository as OWNER/NAME")


def push_to_hub(folder: Path, repo: str, private: bool = False) -> str:
    """Upload an export folder to the dataset repository `repo` (created if missing) and return its
    URL. The token comes from the environment (HF_TOKEN) through huggingface_hub; it is never
    written anywhere. A failure is one line; the local export is kept."""
    from huggingface_hub import HfApi, errors

    from dybench.redact import add_secret

    add_secret(os.environ.get("HF_TOKEN"))
    # the HTTP library's own base error, as huggingface_hub imports it (httpx, or a fork of it)
    http_error = getattr(errors, "HTTPError", errors.HfHubHTTPError)
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                          commit_message="dybench export hf")
    except (OSError, ValueError, http_error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DyBenchError(f"push to {api.endpoint} ({repo}) failed: {reason[:300]}; the export is kept "
                           f"in {folder}: rerun with --push-to-hub to retry") from None
    return f"{api.endpoint}/datasets/{repo}"
