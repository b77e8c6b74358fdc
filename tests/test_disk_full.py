"""A disk that fills up mid-build: one line saying so, nothing half-written listed as finished, and
a rerun with room to spare ends with exactly the clean build's manifest and clips."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_errors import assert_one_line_error
from dybench.build import build_synthetic
from dybench.families import load_data
from dybench.video import read_frames

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]
BUILD = dict(tasks=["moving_direction"], pairs_per_task=6, seed=1)
BUILD_ARGS = ["--tasks", "moving_direction", "--pairs-per-task", "6", "--seed", "1", "--no-progress"]


def hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "README.md"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clean") / "ds"
    build_synthetic(folder, progress=False, **BUILD)
    return folder


@pytest.fixture
def tiny_disk(tmp_path) -> Path:
    """A 2 MB tmpfs: room for about three pairs of clips."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_one_line_and_the_rerun_matches_a_clean_build(clean, tiny_disk, tmp_path):
    out = tiny_disk / "ds"
    result = subprocess.run([*CLI, "build-pairs", "--out", str(out), *BUILD_ARGS], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert_one_line_error(result, "no space left on device")
    # Whatever the manifest lists is complete: every row's clip decodes to all its frames.
    listed = (out / "manifest.jsonl").read_text().splitlines()
    assert len(listed) < 12
    for item in load_data(str(out)).items if listed else []:
        assert read_frames(out / item.video)[0].shape[0] == 16, item.video
    moved = tmp_path / "roomy"
    shutil.copytree(out, moved)
    summary = build_synthetic(moved, progress=False, **BUILD)
    assert summary.resumed_jobs == len(listed) // 2
    assert hashes(moved) == hashes(clean)


class DiskFillsUp:
    """`os.write` on a disk with `room` bytes left: a write that does not fit is cut short (as the
    kernel does), and the next one fails with ENOSPC."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.real_write = os.write

    def __call__(self, fd: int, data: bytes) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self.real_write(fd, bytes(data[: self.room]))
        self.room -= written
        return written


def test_a_manifest_append_cut_short_by_a_full_disk_leaves_only_whole_jobs(clean, tmp_path, monkeypatch):
    rows = (clean / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    three_jobs = b"".join(rows[:6])
    out = tmp_path / "ds"
    monkeypatch.setattr(os, "write", DiskFillsUp(len(three_jobs) + len(rows[6]) // 2))
    with pytest.raises(OSError) as raised:
        build_synthetic(out, progress=False, **BUILD)
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert (out / "manifest.jsonl").read_bytes() == three_jobs  # not half of the fourth job's first row
    summary = build_synthetic(out, progress=False, **BUILD)
    assert (summary.resumed_jobs, summary.built_jobs) == (3, 3)
    assert hashes(out) == hashes(clean)
