"""Test plugin: `dybench eval` sleeps after storing each batch, so a test can kill or interrupt a
run halfway. `DYBENCH_TEST_SLOW_BATCH_S=SECONDS`; loaded with DYBENCH_PLUGINS (tests/slow_runs.py
sets both), it wraps the prediction store's appender, so the eval loop carries no test code."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from dybench import store

_append = store.Appender.append


@functools.wraps(_append)
def _append_then_sleep(self: Any, predictions: Any) -> None:
    _append(self, predictions)
    seconds = float(os.environ.get("DYBENCH_TEST_SLOW_BATCH_S", "0") or 0)
    if seconds:
        time.sleep(seconds)


store.Appender.append = _append_then_sleep
