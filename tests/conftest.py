"""Shared test data: tiny synthetic datasets built once per session through the real builder.

`synthetic_test_set`: 4 pairs per task of every category, `--split test` (dynamic items only).
`synthetic_train_set`: 2 pairs per task, `--split train` (adds the static control questions).
Tests that damage a dataset must copy it first (they are shared by the whole session).
"""

from __future__ import annotations

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
