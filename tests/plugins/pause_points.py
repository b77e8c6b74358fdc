"""Test plugin: make `dybench train-crpo` stop once at a known point, so a test can send a signal
there rather than wherever the scheduler happens to be.

`DYBENCH_TEST_PAUSE_AT=PHASE:SECONDS` with PHASE one of
- `load`: just before the policy is loaded,
- `rollout`: just before the first step's rollouts are generated,
- `update`: inside the first optimizer update (after the step's metrics row is written);
the run writes OUT/.paused-PHASE and sleeps there once. Loaded with DYBENCH_PLUGINS (dybench/plugins.py),
it wraps the trainer's own functions, so the trainer carries no test code.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable

import torch

from dybench.train import trainer as trainer_module

ENV = "DYBENCH_TEST_PAUSE_AT"
_done: set[str] = set()
_current: list[Any] = []  # the Trainer being run


def pause(phase: str) -> None:
    name, _, seconds = os.environ.get(ENV, "").partition(":")
    if name != phase or phase in _done or not _current:
        return
    _done.add(phase)
    out = _current[-1].config.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f".paused-{phase}").write_text("")
    time.sleep(float(seconds or 60))


def before(phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def paused(*args: Any, **kwargs: Any) -> Any:
        pause(phase)
        return function(*args, **kwargs)

    return paused


_init = trainer_module.Trainer.__init__


@functools.wraps(_init)
def _remember(self: Any, *args: Any, **kwargs: Any) -> None:
    _current.append(self)
    _init(self, *args, **kwargs)


trainer_module.Trainer.__init__ = _remember
trainer_module.load_policy = before("load", trainer_module.load_policy)
trainer_module.generation_model = before("rollout", trainer_module.generation_model)
torch.optim.AdamW.step = before("update", torch.optim.AdamW.step)
