"""Environment that makes a `dybench eval` subprocess slow enough to be stopped halfway: the
slow_batches plugin (tests/plugins/slow_batches.py) sleeps after each stored batch."""

from __future__ import annotations

import os
from pathlib import Path

SLOW_PLUGIN = str(Path(__file__).parent / "plugins" / "slow_batches.py")


def slow_batches(seconds: float) -> dict[str, str]:
    plugins = ",".join(filter(None, [os.environ.get("DYBENCH_PLUGINS"), SLOW_PLUGIN]))
    return {"DYBENCH_PLUGINS": plugins, "DYBENCH_TEST_SLOW_BATCH_S": str(seconds)}
