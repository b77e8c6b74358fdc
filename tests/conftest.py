"""Shared test data: tiny synthetic datasets built once per session through the real builder.

`synthetic_test_set`: 4 pairs per task of every category, `--split test` (dynamic items only).
`synthetic_train_set`: 2 pairs per task, `--split train` (adds the static control questions).
`small_train_set`: the train split with 64 x 64 clips of 8 frames (16 visual tokens each), for training runs.
`model_cache`: a per-module $DYBENCH_CACHE, so the tiny checkpoint is built once per module.
Tests that damage a dataset must copy it first (they are shared by the whole session).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dybench.build import build_synthetic


@pytest.fixture(scope="session")
def synthetic_test_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic") / "test_set"
    build_synthetic(folder, pairs_per_task=4, seed=0, split="test", progress=False)
    return folder


@pytest.fixture(scope="session")
def synthetic_train_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic") / "train_set"
    build_synthetic(folder, pairs_per_task=2, seed=0, split="train", progress=False)
    return folder


@pytest.fixture(scope="session")
def small_train_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("small") / "train_set"
    build_synthetic(folder, pairs_per_task=1, seed=0, split="train", progress=False, size=64, n_frames=8)
    return folder


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get("DYBENCH_CACHE"):
            patch.setenv("DYBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
